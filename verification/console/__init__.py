"""The staff console: server-rendered pages for labs, realm admins and auditors.

Layers, as in the rest of the service: ``routes`` (HTTP, forms, cookies, templates) →
``service`` (staff, sign-in, sessions; the lab's work through
:mod:`verification.service.codes`, the same functions ``/api/issue``,
``/api/checkcodestatus`` and ``/api/expirecode`` call) → ``store`` (every SQL statement on
the console's tables) → ``models``.
"""
