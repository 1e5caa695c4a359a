"""Train ILSGAN at 128x128 (see README). All logic lives in pipeline/train_cli.py."""
from pipeline import train_cli

main = train_cli.make_command(128, default_auto_test=False)

if __name__ == '__main__':
    main()
