from zero2vllm.cli import main

main()
