from slimkit.cli import main

raise SystemExit(main())
