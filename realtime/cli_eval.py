"""``mindeye-rt eval SESSION_DIR``: the papers' table of a recorded session and, with
``--delays``, its accuracy against decode delay."""

from __future__ import annotations

from rt_base.checks import check_number


def add_eval(sub) -> None:
    """The ``eval`` subcommand."""
    p = sub.add_parser(
        "eval",
        help="score a session folder as the MindEye papers do (eval.md / eval.json); "
        "--delays: accuracy against decode delay",
    )
    p.add_argument("session", help="session folder (written by `mindeye-rt stream`)")
    p.add_argument(
        "--eval-weights",
        dest="eval_weights",
        help="folder of the feature networks' local weights files: alexnet.pth, "
        "inception_v3.pth, efficientnet_b1.pth (torchvision state dicts), swav_resnet50.pth "
        "(facebookresearch/swav), clip_vit_l14.safetensors (open_clip layout); a metric whose "
        "file is absent is listed as not computed (nothing is downloaded)",
    )
    p.add_argument(
        "--delays",
        help="also re-estimate every trial at these decode delays (s), START:STOP:STEP or a "
        "list, e.g. 4:20:2; writes accuracy_vs_delay.tsv and .png",
    )
    p.add_argument("--device", help="torch device (default: the session's)")
    p.add_argument(
        "--recon-size",
        type=int,
        default=425,
        dest="recon_size",
        help="side (px) of PixCorr and SSIM (default 425, the papers')",
    )
    p.add_argument(
        "--sample-size",
        type=int,
        default=300,
        dest="sample_size",
        help="test images per retrieval draw (default 300; fewer images: all, N-way)",
    )
    p.add_argument("--draws", type=int, default=30, help="retrieval draws (default 30)")
    p.add_argument("--seed", type=int, default=0, help="seeds the draws (default 0)")


def cmd_eval(args) -> int:
    """Write the table (and the delay curve) into the session folder and print them."""
    from realtime.eval_delays import accuracy_vs_delay, parse_delays
    from realtime.eval_session import evaluate_session, load_session
    from rt_base.checks import check_torch_device

    load_session(args.session)  # a folder that is not a session fails before any work
    delays = parse_delays(args.delays) if args.delays else None
    size = check_number(args.recon_size, "recon_size", minimum=8, maximum=4096, integer=True)
    sample = check_number(args.sample_size, "sample_size", minimum=2, integer=True)
    draws = check_number(args.draws, "draws", minimum=1, integer=True)
    device = check_torch_device(args.device) if args.device else None
    protocol = dict(sample_size=sample, draws=draws, seed=args.seed)
    evaluate_session(
        args.session, weights_dir=args.eval_weights, device=device, recon_size=size, **protocol
    )
    if delays:
        accuracy_vs_delay(args.session, delays, device=device, **protocol)
    return 0
