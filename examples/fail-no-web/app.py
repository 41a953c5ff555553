print("this app never starts: it has no Procfile")
