from alsresearch.cli import main

raise SystemExit(main())
