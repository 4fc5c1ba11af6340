from speedy.cli import main

main()
