from classbox.cli import main

main()
