"""``facekit index | album | live``: photo archives and video (notebooks 05, 06, 07)."""

from __future__ import annotations

from pathlib import Path

from facekit.cli.common import EXIT_INTERRUPTED, EXIT_OK, Outcome, embedder_of, refresh_gallery_of, store_for_model


def detector_settings(args):
    """The one :class:`~facekit.detection.settings.DetectorSettings` of ``--min-face-size``,
    ``--max-side`` and ``--detect-precision``, handed to either engine."""
    from facekit.detection.settings import DetectorSettings

    return DetectorSettings(min_face_size=args.min_face_size, max_side=args.max_side or None,
                            precision=args.detect_precision)


def cmd_index(args, out: Outcome) -> int:
    store = store_for_model(args, out, photos=True)  # another --model: re-embed the cached photos first
    settings = detector_settings(args)
    if args.engine == "ray":
        from facekit.album.ray import index_folder_ray

        report = index_folder_ray(args.dir, store, address=args.address, num_cpus=args.num_cpus,
                                  precision=args.precision, model=args.model, settings=settings,
                                  shards=args.shards, progress=not args.quiet)
    else:
        from facekit.album.scan import run_local

        report, _ = run_local(args.dir, store, precision=args.precision, model=args.model, settings=settings,
                              progress=not args.quiet)
    for p, reason in report.failed:
        out.fail(p, reason)
    out.rows.append({k: v for k, v in report.to_dict().items() if k not in ("failed", "stage_s")})
    out.extra["stage_s"] = report.stage_s
    if not report.interrupted:  # the store changed: train its saved gallery index now, not in identify
        out.extra["gallery_index"] = refresh_gallery_of(store, embedder_of(args), args)
    if report.interrupted:
        out.finish(["engine", "photos", "cached", "indexed", "faces", "seconds"])
        return EXIT_INTERRUPTED
    return out.finish(["engine", "photos", "cached", "reused", "indexed", "faces", "no_face", "photos_per_s"])


def cmd_album(args, out: Outcome) -> int:
    from facekit.album.organise import organise_album

    album = organise_album(args.dir, progress=not args.quiet, embedder=embedder_of(args))
    dest = album.export(args.out, mode=args.mode, merge=args.merge)
    for s in album.skipped:
        out.fail(s.path, s.reason)
    for name, paths in album.people.items():
        out.rows.append({"person": name, "faces": len(album.faces_of(name)), "photos": len(paths),
                         "folder": str(Path(dest) / name)})
    out.extra["no_face"] = album.no_faces
    return out.finish(["person", "faces", "photos", "folder"])


def cmd_live(args, out: Outcome) -> int:
    import os

    from facekit.live import LiveRecognizer
    from facekit.live.loop import annotate
    from facekit.live.video import VideoSource

    target = tmp = None
    if args.out:
        target = Path(args.out).expanduser()
        if target.is_dir():
            raise IsADirectoryError(f"{target}: is a folder. Fix: give a video file name, e.g. {target / 'live.mp4'}")
        if (target.exists() or target.is_symlink()) and not args.force:
            raise FileExistsError(f"{target}: already exists; facekit does not write over it. Fix: choose a new "
                                  "file name, or pass --force to replace it")
        tmp = target.with_name(f".{target.stem}.{os.getpid()}.tmp{target.suffix or '.mp4'}")
    store = store_for_model(args, out)
    ident = store.identifier(embedder_of(args), allow_empty=True)
    seen: set[str] = set()
    rec = LiveRecognizer(ident, embedder=embedder_of(args))
    src = VideoSource(args.source)
    writer, done = None, False
    try:
        for i, frame in enumerate(src):
            if args.max_frames is not None and i >= args.max_frames:
                break
            r = rec.process(frame)
            out.rows.append({"frame": i, "names": list(r.names), "latency_ms": round(float(r.latency_ms), 1)})
            seen.update(r.names)
            if not args.json and not args.quiet:
                print(f"frame {i}: {', '.join(r.names) or '-'}", flush=True)
            if tmp is not None:
                import cv2

                if writer is None:
                    h, w = frame.shape[:2]
                    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), src.fps or 15.0, (w, h))
                ann = annotate(frame, r) if r.ok else frame
                writer.write(cv2.cvtColor(ann, cv2.COLOR_RGB2BGR))
        done = True
    finally:
        src.close()
        from facekit.core.constants import UNKNOWN

        store.record_matches(sorted(seen - {UNKNOWN}))  # retention: `facekit people --older-than`
        if writer is not None:
            writer.release()
        if tmp is not None:  # the video appears whole, or not at all
            if done and tmp.exists():
                os.replace(tmp, target)
            else:
                tmp.unlink(missing_ok=True)
    return out.finish() if args.json else EXIT_OK
