// Progressive enhancement: the page already says when the code expires; this counts down.
(function () {
  var span = document.getElementById("expires-in");
  if (!span) { return; }
  var end = Date.now() + Number(span.getAttribute("data-seconds")) * 1000;
  function tick() {
    var left = Math.max(0, Math.round((end - Date.now()) / 1000));
    var minutes = Math.floor(left / 60);
    var seconds = left % 60;
    span.textContent = minutes + ":" + (seconds < 10 ? "0" : "") + seconds;
    if (left > 0) { setTimeout(tick, 1000); }
  }
  tick();
})();
