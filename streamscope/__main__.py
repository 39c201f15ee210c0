"""``python -m streamscope`` and the ``streamscope`` command: the process settings (``environment.tune``), then the
command line. The settings go first, before anything imports torch."""


def main() -> None:
    from streamscope.environment import tune

    tune()
    from streamscope.cli import app

    app()


if __name__ == "__main__":
    main()
