from provision9p.cli import main

raise SystemExit(main())
