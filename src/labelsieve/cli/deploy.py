def add(sub):
    pass
