"""HTTP plumbing shared by the domain routers: dependencies and the v1 router."""
