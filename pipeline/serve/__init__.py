"""`framecast serve` on Ray Serve: the application and its deployments (app.py), the model
hosts (hosts.py), the HTTP routes (routes.py) and the wire format (wire.py)."""
