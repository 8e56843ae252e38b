from gsenet.cli import main

raise SystemExit(main())
