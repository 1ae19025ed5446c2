from claude_pool.reconciler.cli import main

raise SystemExit(main())
