from onloop.cli.main import main

main()
