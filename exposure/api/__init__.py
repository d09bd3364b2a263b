"""Wire contracts: the request and response models the services and the SDK both import."""
