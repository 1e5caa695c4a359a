"""Train ILSGAN at 64x64 (see README). All logic lives in pipeline/train_cli.py."""
from pipeline import train_cli

main = train_cli.make_command(64, default_auto_test=True)

if __name__ == '__main__':
    main()
