"""Business rules, one module per resource; routers call these with keyword arguments."""
