from descant.cli import main

raise SystemExit(main())
