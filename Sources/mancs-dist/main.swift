print("mancs-dist: not yet implemented")
