"""The `fastlstm` command."""

import sys


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # every further argument belongs to fastlstm.bench
        from . import bench
        return bench.main(argv[1:], prog="fastlstm bench")
    from . import commands  # demo, tutorial, train-text, generate
    parser = commands.Parser(prog="fastlstm", description="Fast CPU LSTM, GRU and RNN kernels.")
    sub = parser.add_subparsers(dest="command", required=True)
    commands.add_parsers(sub)
    p = sub.add_parser("selfcheck", help="check the C kernels against the NumPy reference and time both")
    p.add_argument("--T", type=int, default=50)
    p.add_argument("--B", type=int, default=16)
    p.add_argument("--I", type=int, default=64)
    p.add_argument("--H", type=int, default=128)
    sub.add_parser("bench", add_help=False,
                   help="time fastlstm against the reference, PyTorch and ONNX Runtime "
                        "(`fastlstm bench --help` for its options)")
    args = parser.parse_args(argv)
    if args.command == "selfcheck":
        from . import selfcheck
        if min(args.T, args.B, args.I, args.H) < 1:
            parser.error("sizes must be positive")
        return selfcheck.main(args.T, args.B, args.I, args.H)
    if args.command in commands.COMMANDS:
        return commands.run(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
