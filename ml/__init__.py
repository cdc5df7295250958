"""ml-core: rental probability, price suggestions and similar listings with LightGBM, served by
Ray Serve deployments (issue #6)."""
