from labelsieve.cli import main

raise SystemExit(main())
