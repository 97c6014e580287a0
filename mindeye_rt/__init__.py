"""The ``mindeye-rt`` program: the top floor, which only assembles the commands of the floors
below (the streaming application's and the consoles') into one command line."""
