from qcdaemon.cli import main

raise SystemExit(main())
