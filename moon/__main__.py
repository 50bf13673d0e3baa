from moon.cli.app import main

main()
