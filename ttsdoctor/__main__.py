from ttsdoctor.cli import main

raise SystemExit(main())
