"""Train ILSGAN at 64x64 (see README). All logic lives in training/train_cli.py."""
from training import train_cli

main = train_cli.make_command(64, default_auto_test=True)

if __name__ == '__main__':
    main()
