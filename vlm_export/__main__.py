from vlm_export.cli import main

main()
