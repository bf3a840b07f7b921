"""Training (ultralytics, imported lazily), model directories, and deployment to one machine or a fleet."""
