from healthinfo.cli import main

raise SystemExit(main())
