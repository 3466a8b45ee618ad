from overopt.cli import entry

entry()
