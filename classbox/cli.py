"""The `classbox` command."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click

from . import __version__, keys, storage
from .config import Config
from .errors import ChannelRejected, ClassboxError, DataDirLocked
from .sync.download import Throttle
from .sync.engine import ChannelResult, Progress
from .sync.sources import Transfer, open_source

log = logging.getLogger(__name__)

DATA_HELP = "data directory of the box [env CLASSBOX_DATA]"


class Group(click.Group):
    """A click group that turns ClassboxError into one line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ChannelRejected as exc:
            click.echo(f"classbox: rejected ({exc.reason}): {exc}; nothing was changed", err=True)
            ctx.exit(1)
        except ClassboxError as exc:
            click.echo(f"classbox: {exc}", err=True)
            ctx.exit(1)


def data_option(f: Any) -> Any:
    """Add --data DIR to a command that touches a box's data."""
    return click.option("--data", "data", type=click.Path(file_okay=False, path_type=Path), help=DATA_HELP)(f)


def _config(**overrides: Any) -> Config:
    return Config.from_env(**overrides)


@click.group(cls=Group)
@click.version_option(__version__, prog_name="classbox")
def main() -> None:
    """classbox: an offline-first classroom box for rural teaching points."""


@main.command()
@click.option("--host", help="address to listen on [default 0.0.0.0, env CLASSBOX_HOST]")
@click.option("--port", type=int, help="port to listen on, 0 for any free one [default 8080, env CLASSBOX_PORT]")
@click.option("--threads", type=int, help="worker threads [default 32, env CLASSBOX_THREADS]")
@click.option("--no-demo", is_flag=True, help="do not install the demo channel into an empty data directory")
@click.option("--hub", is_flag=True, help="also run the central school's hub (/hub) [env CLASSBOX_ROLE=hub]")
@data_option
def serve(host: str | None, port: int | None, threads: int | None, no_demo: bool, hub: bool,
          data: Path | None) -> None:
    """Serve the box to the classroom TVs and phones."""
    import waitress

    from . import create_app, logring, netinfo, sdnotify
    from .reporter import Reporter

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = _config(host=host, port=port, threads=threads, data_dir=data, demo=False if no_demo else None,
                     role="hub" if hub else None)
    signal.signal(signal.SIGTERM, _stop)
    app = create_app(config)
    app.extensions["classbox_logring"] = logring.install()  # the dashboard's recent problems and log lines
    box = app.extensions["classbox"]

    def stop(signum: int, frame: object) -> None:
        # waitress catches the SystemExit and waits up to 5 s for busy threads: answer the
        # screens parked waiting for a change first, so that they are not what it waits for.
        sdnotify.stopping()
        box.classroom.release_waiters()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        box.first_start()
        box.setup.start()
        # Every TV keeps two connections (video, long poll) and every phone one: waitress's default of
        # 100 open connections is reached by a school with 30 TVs and 30 phones.
        server = waitress.create_server(app, host=config.host, port=config.port, threads=config.threads,
                                        connection_limit=config.connections, ident="classbox")
        bound_port = int(getattr(server, "effective_port", config.port))
        served = {"pid": os.getpid(), "port": bound_port, "token": app.config["CONTROL_TOKEN"]}
        storage.atomic_write(box.data.serve_file, json.dumps(served).encode(), mode=0o600)
        worker = app.extensions["classbox_sync"]
        worker.start()
        reporting = Reporter(box, worker.status, interval=config.report_interval).start()  # to its hub, if any
        app.extensions["classbox_reporter"] = reporting
        announcing, announcer = _announce(app, box, bound_port)
        url = f"http://{netinfo.url_host(config.host)}:{bound_port}"
        click.echo(f"classbox {__version__}: {len(box.catalog)} lessons, data in {config.data_dir}")
        click.echo(f"  电视打开 (TV):    {url}/tv")
        click.echo(f"  手机打开 (phone): {url}/remote")
        if config.host in ("0.0.0.0", "::"):
            click.echo(f"  本机 (this machine): http://127.0.0.1:{bound_port}/tv")
        sys.stdout.flush()
        # The socket is bound and listening: a request from now on is answered once run() starts.
        sdnotify.ready(f"{len(box.catalog)} lessons, {url}/tv")
        interval = sdnotify.watchdog_interval()
        watchdog = None
        if interval is not None:
            # Pet systemd's watchdog only while the server answers itself within a quarter of the interval.
            probe = (_local_host(config.host), bound_port, min(interval / 4, 10))
            watchdog = sdnotify.Watchdog(interval, healthy=lambda: _answers(*probe)).start()
        try:
            server.run()
        except (KeyboardInterrupt, SystemExit):
            log.info("stopping")
        finally:
            if watchdog is not None:
                watchdog.stop()
            server.close()
            worker.stop()
            reporting.stop()
            announcing.set()
            announcer.join(timeout=5)  # the goodbye: other boxes drop this one now, not in an hour
            storage.remove_file(box.data.serve_file)
    finally:
        box.close()


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _local_host(host: str) -> str:
    """Return the address this machine reaches a server bound to host on."""
    return {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)


def _answers(host: str, port: int, timeout: float) -> bool:
    """Tell whether the server answers GET /-/version within timeout: the watchdog's health check."""
    import http.client

    # http.client, not urllib: no proxy from the environment between the box and itself.
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", "/-/version")
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def _announce(app: Any, box: Any, port: int) -> tuple[threading.Event, threading.Thread]:
    """Announce the box with zeroconf from a thread of its own; set the event returned to stop and say goodbye."""
    from .discovery import Announcement, Discovery

    settings = box.setup.settings()
    announcement = Announcement(box_id=box.box_id, name=settings.box_name or f"classbox-{box.short_id}",
                                school=settings.school, version=__version__, role=box.config.role, port=port)
    discovery = Discovery(announcement, box.config.interfaces)
    app.extensions["classbox_discovery"] = discovery
    stop = threading.Event()
    thread = threading.Thread(target=discovery.run, args=(stop,), name="zeroconf", daemon=True)
    thread.start()
    return stop, thread


@main.command()
@click.option("--port", type=int, help="port the box serves on [default 8080, env CLASSBOX_PORT]")
@click.option("--sample", type=click.IntRange(min=0), default=20, show_default=True,
              help="how many stored files to re-hash, chosen at random")
@data_option
def doctor(port: int | None, sample: int, data: Path | None) -> None:
    """Check the box, also while it serves: one line per check, exit status 1 if any fails."""
    from .doctor import run_checks

    checks = run_checks(_config(data_dir=data, port=port), sample=sample)
    for check in checks:
        click.echo(check.line())
    if not all(check.ok for check in checks):
        sys.exit(1)


@main.command("hash-password")
def hash_password() -> None:
    """Ask for a password twice and print its hash, for admin_password_hash in a provisioning file."""
    from .accounts import hash_password as make_hash

    password = click.prompt("admin password (at least 8 characters)", hide_input=True,
                            confirmation_prompt=True, err=True)
    click.echo(make_hash(password))


@main.command()
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="folder to write publisher.key and publisher.pub into")
@click.option("--force", is_flag=True, help="replace an existing key pair")
def keygen(out: Path, force: bool) -> None:
    """Write a new ed25519 publisher key pair."""
    private, public = keys.generate(out, overwrite=force)
    click.echo(f"wrote {private} (secret, mode 0600) and {public}")
    click.echo(f"key id: {keys.key_id(keys.load_public(public))}")


@main.group(cls=Group)
def channel() -> None:
    """Build, check and install channels."""


@channel.command("build")
@click.argument("src", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="publisher private key")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="mirror root to write the channel into")
@click.option("--expires-days", type=click.FloatRange(min=1), default=365, show_default=True,
              help="days until boxes stop accepting this version")
@click.option("--from-smartedu", "catalogue", type=click.Path(file_okay=False, path_type=Path),
              help="build from a folder of the national platform's catalogue JSON instead of SRC")
@click.option("--files", "files_dir", type=click.Path(file_okay=False, path_type=Path),
              help="with --from-smartedu: folder holding the platform's files (FILES/<resource id>/<name>)")
@click.option("--download", is_flag=True, help="with --from-smartedu: fetch files not in --files from the platform")
@click.option("--header", "headers", multiple=True, metavar="'NAME: VALUE'",
              help="with --download: a request header the platform needs (your own credentials; repeatable)")
@click.option("--since", help="with --from-smartedu: rebuild only what changed after this catalogue version")
@click.option("--id", "channel_id", default="smartedu", show_default=True,
              help="with --from-smartedu: the channel's id")
@click.option("--title", default="国家中小学智慧教育平台", show_default=True,
              help="with --from-smartedu: the channel's title")
def channel_build(src: Path | None, key_path: Path, out: Path, expires_days: float, catalogue: Path | None,
                  files_dir: Path | None, download: bool, headers: tuple[str, ...], since: str | None,
                  channel_id: str, title: str) -> None:
    """Build a signed channel from a source folder (channel.json and <folder>/lesson.json), or from the platform."""
    from . import channel as ch

    if catalogue is not None:
        if src is not None:
            raise ClassboxError("give either SRC or --from-smartedu, not both")
        _build_from_smartedu(catalogue, key_path, out, expires_days, files_dir, download, headers, since,
                             channel_id, title)
        return
    if src is None:
        raise ClassboxError("missing SRC: the source folder to build (or --from-smartedu CATALOG_DIR)")
    if files_dir or download or headers or since:
        raise ClassboxError("--files, --download, --header and --since go with --from-smartedu")
    manifest = ch.build(src, keys.load_private(key_path), out, expires_days=expires_days)
    blobs = manifest.blobs()
    click.echo(f"built channel {manifest.id} version {manifest.version}: {len(manifest.lessons)} lessons, "
               f"{len(blobs)} files, {sum(b.size for b in blobs.values()) / 1e6:.1f} MB, in {out}")


def _parse_headers(headers: tuple[str, ...]) -> dict[str, str]:
    parsed = {}
    for h in headers:
        name, sep, value = h.partition(":")
        if not sep or not name.strip() or any(c in h for c in "\r\n\0") or " " in name.strip():
            raise ClassboxError(f"--header {h.split(':')[0]!r}…: expected 'Name: value' on one line")
        parsed[name.strip()] = value.strip()
    return parsed


def _build_from_smartedu(catalogue: Path, key_path: Path, out: Path, expires_days: float, files_dir: Path | None,
                         download: bool, headers: tuple[str, ...], since: str | None, channel_id: str,
                         title: str) -> None:
    from .smartedu.build import build as build_smartedu
    from .smartedu.files import Files

    if headers and not download:
        raise ClassboxError("--header is only used with --download")
    if files_dir is not None and not files_dir.is_dir():
        raise ClassboxError(f"--files {files_dir}: no such folder")
    if files_dir is None and not download:
        raise ClassboxError("say where the files come from: --files FILES_DIR, --download, or both")
    key = keys.load_private(key_path)
    bar = ProgressLine()
    progress = Progress(channel_id)

    def note() -> str:
        return f"已下载 {files.bytes_downloaded / 1e6:.1f} MB" if download else ""

    def on_lesson(done: int, total: int, name: str) -> None:
        progress.total, progress.done, progress.lesson = total, done, name
        bar.show_count(progress, note=note())

    def on_bytes(n: int) -> None:  # a long video moves the line too, not only a finished package
        bar.show_count(progress, note=note())

    files = Files(out, files_dir, download=download, headers=_parse_headers(headers), on_bytes=on_bytes)
    with bar:
        summary = build_smartedu(catalogue, key, out, files, channel_id=channel_id, title=title, since=since,
                                 expires_days=expires_days, on_lesson=on_lesson)
    for line in summary.lines():
        click.echo(line)
    if summary.manifest is None:
        raise ClassboxError(f"no lesson could be built, so nothing was written to {out} (see above)")
    if summary.problems:
        click.echo(f"classbox: {len(summary.problems)} problems in the catalogue or its files (listed above); "
                   "the rest was built", err=True)
        sys.exit(1)


@channel.command("verify")
@click.argument("root", type=click.Path(file_okay=False, path_type=Path))
@click.option("--pubkey", required=True, type=click.Path(dir_okay=False, path_type=Path), help="publisher public key")
@click.option("--channel", "channel_id", help="channel id, when ROOT holds several")
def channel_verify(root: Path, pubkey: Path, channel_id: str | None) -> None:
    """Check a channel's signature, format, expiry and every file."""
    from . import channel as ch

    manifest = ch.verify(root, channel_id, keys.load_public(pubkey), Config.from_env().max_manifest_bytes)
    click.echo(f"✓ channel {manifest.id} version {manifest.version}: signature good, expires {manifest.expires_at}, "
               f"{len(manifest.lessons)} lessons, {len(manifest.blobs())} files verified")


@channel.command("add")
@click.argument("root", type=click.Path(file_okay=False, path_type=Path))
@click.option("--trust", type=click.Path(dir_okay=False, path_type=Path),
              help="publisher public key to pin for this channel (needed the first time)")
@click.option("--channel", "channel_id", help="channel id, when ROOT holds several")
@data_option
def channel_add(root: Path, trust: Path | None, channel_id: str | None, data: Path | None) -> None:
    """Verify a channel folder and install it into the box."""
    from .box import Box

    config = _config(data_dir=data)
    key = keys.load_public(trust) if trust else None
    try:
        box = Box(config)
    except DataDirLocked:
        click.echo("the box is serving; it installs the channel", err=True)
        _report(_ask_server(config, "channels", {"root": str(root.resolve()), "channel": channel_id,
                                                 "trust": trust.read_text() if trust else None}))
        return
    with box, ProgressLine() as line:
        result = box.add_channel(root, key, channel_id, on_progress=line.show)
    _report(result.as_dict())


@main.command()
@click.option("--source", "sources", multiple=True,
              help="http(s):// mirror or peer URL (a peer box: http://HOST:8080/mirror), or a folder / USB drive "
                   "[default: CLASSBOX_SYNC_SOURCES]")
@click.option("--channel", "channel_ids", multiple=True, help="only this channel (repeatable)")
@click.option("--trust", type=click.Path(dir_okay=False, path_type=Path),
              help="publisher key to pin for a channel this box does not follow yet")
@data_option
def sync(sources: tuple[str, ...], channel_ids: tuple[str, ...], trust: Path | None, data: Path | None) -> None:
    """Bring the box's channels up to date; when the box is serving, ask the server to do it."""
    _sync(_config(data_dir=data), list(sources), list(channel_ids), trust)


def _sync(config: Config, sources: list[str], channel_ids: list[str], trust: Path | None,
          from_drive: bool = False) -> None:
    """Run a sync here, or hand it to the running server of the data directory."""
    from .box import Box
    from .sync.worker import run_sync

    key = keys.load_public(trust) if trust else None
    try:
        box = Box(config)
    except DataDirLocked:
        _sync_through_server(config, sources, channel_ids, trust)
        return
    with box:
        chosen = sources or config.sources
        if not chosen:
            raise ClassboxError("no source: pass --source URL or --source PATH, or set CLASSBOX_SYNC_SOURCES")
        wanted = channel_ids or box.subscribed()
        if from_drive:
            on_drive = open_source(chosen[0]).channel_ids()
            if not on_drive:
                raise ClassboxError(f"{chosen[0]} holds no channel (expected {chosen[0]}/classbox/channels/<id>/)")
            new = sorted(set(on_drive) - set(wanted))
            if new:
                click.echo(f"on the drive but not followed by this box (add with --channel ID --trust PUB): "
                           f"{', '.join(new)}", err=True)
            wanted = [c for c in wanted if c in on_drive]
        if not wanted:
            raise ClassboxError("no channel to bring in: pass --channel ID --trust PUBKEY")
        with ProgressLine() as line:
            def result(channel_id: str, r: ChannelResult) -> None:
                line.clear()
                _report(r.as_dict())

            record = run_sync(box, chosen, wanted, "usb" if from_drive else "cli", trust=key,
                              transfer=Transfer(throttle=Throttle(None if from_drive else config.max_rate)),
                              on_progress=line.show, on_result=result)
    for error in record.errors:
        click.echo(f"  ✗ {error}", err=True)
    if not record.ok:
        sys.exit(1)


@main.command()
@click.argument("channel_id")
@click.option("--trust", type=click.Path(dir_okay=False, path_type=Path), help="publisher key, for a new channel")
@click.option("--section", multiple=True, help="only these sections (repeatable)")
@click.option("--stage", multiple=True, help="only these stages, e.g. 小学")
@click.option("--grade", multiple=True, help="only these grades, e.g. 一年级")
@click.option("--subject", multiple=True, help="only these subjects, e.g. 语文")
@click.option("--edition", multiple=True, help="only these editions, e.g. 统编版")
@data_option
def subscribe(channel_id: str, trust: Path | None, data: Path | None, **levels: tuple[str, ...]) -> None:
    """Follow a channel, or only part of it; scheduled lessons are always fetched."""

    body = {"channel": channel_id, "filters": {k: list(v) for k, v in levels.items()},
            "trust": trust.read_text() if trust else None}
    subscriptions = _on_box(_config(data_dir=data), "subscriptions", body)
    for followed, chosen in subscriptions["subscriptions"].items():
        shown = "; ".join(f"{k}: {'、'.join(v)}" for k, v in chosen.items()) or "the whole channel"
        click.echo(f"{followed}: {shown}")


@main.command()
@data_option
def scrub(data: Path | None) -> None:
    """Re-hash every file in the store; move damaged ones to quarantine/ so the next sync fetches them again."""
    from .box import Box

    config = _config(data_dir=data)
    try:
        box = Box(config)
    except DataDirLocked:
        click.echo("the box is serving; it checks the store (no progress shown)", err=True)
        bad = _ask_server(config, "scrub", {}, timeout=24 * 3600)["damaged"]
    else:
        with box, click.progressbar(length=max(1, len(box.store.blobs())), label="checking",
                                    file=sys.stderr) as bar:
            bad = box.scrub(lambda done, total: bar.update(done - bar.pos))
    if bad:
        click.echo(f"{len(bad)} damaged files moved to quarantine/; the next sync fetches them again:")
        for sha in bad:
            click.echo(f"  {sha}")
        sys.exit(1)
    click.echo("every file in the store is intact")


@main.command()
@click.argument("lesson_id")
@click.option("--off", is_flag=True, help="unpin it again")
@data_option
def pin(lesson_id: str, off: bool, data: Path | None) -> None:
    """Pin a lesson so that making room for new ones never removes its files."""

    pinned = _on_box(_config(data_dir=data), "pins", {"lesson": lesson_id, "pinned": not off})["pinned"]
    click.echo(f"pinned: {', '.join(pinned) or 'nothing'}")


@main.group(cls=Group)
def room() -> None:
    """Name the box's classrooms; each TV shows one room."""


@room.command("list")
@data_option
def room_list(data: Path | None) -> None:
    """List the rooms."""
    _print_rooms(_on_box(_config(data_dir=data), "rooms", {}))


@room.command("add")
@click.argument("name")
@click.option("--class", "class_label", default="", help="the class it holds, e.g. 一年级, matched by hub schedules")
@data_option
def room_add(name: str, class_label: str, data: Path | None) -> None:
    """Add a room, or change its class."""
    _print_rooms(_on_box(_config(data_dir=data), "rooms", {"name": name, "class": class_label}))


@room.command("remove")
@click.argument("name")
@data_option
def room_remove(name: str, data: Path | None) -> None:
    """Remove a room."""
    _print_rooms(_on_box(_config(data_dir=data), "rooms", {"name": name, "remove": True}))


def _print_rooms(answer: dict[str, Any]) -> None:
    for r in answer["rooms"]:
        click.echo(f"{r['name']}{'  (' + r['class'] + ')' if r['class'] else ''}")


@room.command("timetable")
@click.argument("name")
@click.argument("periods_file", type=click.File("rb"))
@data_option
def room_timetable(name: str, periods_file: Any, data: Path | None) -> None:
    """Set a room's weekly periods from a JSON list of {weekday, number, start, end, subject}."""
    try:
        periods = json.loads(periods_file.read())
    except ValueError as exc:
        raise ClassboxError(f"{periods_file.name} is not JSON: {exc}") from None
    answer = _on_box(_config(data_dir=data), "timetable", {"room": name, "periods": periods})
    click.echo(f"{answer['room']}: {len(answer['periods'])} periods a week")


@room.command("book")
@click.argument("name")
@click.argument("date")
@click.argument("period", type=int)
@click.argument("lesson_id", required=False, default="")
@click.option("--note", default="", help="a short note shown with the lesson")
@data_option
def room_book(name: str, date: str, period: int, lesson_id: str, note: str, data: Path | None) -> None:
    """Put a lesson into a room's period on a date (YYYY-MM-DD); without LESSON_ID, clear that period."""
    body = {"room": name, "date": date, "period": period, "lesson": lesson_id, "note": note}
    answer = _on_box(_config(data_dir=data), "bookings", body)
    click.echo(f"{answer['room']} {answer['date']} 第{answer['period']}节: {answer['lesson'] or '（空）'}")


def _on_box(config: Config, action: str, body: dict[str, Any]) -> dict[str, Any]:
    """Run an action on the box: here if the data directory is free, else by asking its running server."""
    from .actions import ACTIONS
    from .box import Box

    try:
        box = Box(config)
    except DataDirLocked:
        return _ask_server(config, action, body)
    with box:
        return ACTIONS[action](box, body)


def _server(config: Config) -> dict[str, Any]:
    """Return what the running server of this data directory wrote in serve.json (port, token)."""
    try:
        served = json.loads((config.data_dir / "serve.json").read_bytes())
        return {"port": int(served["port"]), "token": served.get("token", "")}
    except PermissionError:
        raise ClassboxError(f"the box is serving, and only its own user may ask it: run this as the user "
                            f"that owns {config.data_dir}") from None
    except (OSError, ValueError, KeyError):
        raise ClassboxError(f"the data directory {config.data_dir} is in use, but no server answers for it") from None


def _ask_server(config: Config, command: str, body: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
    """Send one control request to the running server and return its JSON answer; raise with its error."""
    import urllib.error
    import urllib.request

    from .web.control import TOKEN_HEADER

    served = _server(config)
    request = urllib.request.Request(f"http://127.0.0.1:{served['port']}/api/v1/control/{command}",
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", TOKEN_HEADER: served["token"]})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return json.loads(r.read())  # type: ignore[no-any-return]
    except urllib.error.HTTPError as exc:
        answer = json.loads(exc.read() or b"{}")
        if answer.get("reason"):
            raise ChannelRejected(answer["reason"], answer.get("error", str(exc))) from None
        raise ClassboxError(answer.get("error", str(exc))) from None
    except OSError as exc:
        raise ClassboxError(f"cannot reach the running box on port {served['port']}: {exc}") from None


@main.group(cls=Group)
def usb() -> None:
    """Carry channels on a USB drive from one box to another."""


@usb.command("export")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--channel", "channel_ids", multiple=True, help="only this channel (repeatable) [default: all]")
@data_option
def usb_export(path: Path, channel_ids: tuple[str, ...], data: Path | None) -> None:
    """Write the box's channels to a drive (under PATH/classbox/); run again to resume."""
    from .datadir import DataDir
    from .store import Store
    from .usb import export

    config = _config(data_dir=data)
    # Reading needs no lock: blobs never change and manifests are replaced whole.
    store = Store(DataDir(config.data_dir))
    with click.progressbar(length=1, label="writing", file=sys.stderr) as bar:
        def progress(done: int, total: int) -> None:
            bar.length = max(total, 1)
            bar.update(done - bar.pos)

        result = export(store, path, list(channel_ids) or None, progress)
    click.echo(f"exported {', '.join(result.channels)} to {path}/classbox: {result.files_written} files written "
               f"({result.bytes_written / 1e6:.1f} MB), {result.files_present} already there")


@usb.command("import")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--channel", "channel_ids", multiple=True, help="only this channel (repeatable)")
@click.option("--trust", type=click.Path(dir_okay=False, path_type=Path),
              help="publisher key to pin for a channel this box does not follow yet")
@data_option
def usb_import(path: Path, channel_ids: tuple[str, ...], trust: Path | None, data: Path | None) -> None:
    """Bring channels in from a drive, with the same checks as any source."""
    _sync(_config(data_dir=data), [str(path)], list(channel_ids), trust, from_drive=True)


def _sync_through_server(config: Config, sources: list[str], channels: list[str], trust: Path | None) -> None:
    """Hand a sync to the running server of this data directory and follow its progress."""
    import urllib.error
    import urllib.request

    port = _server(config)["port"]
    base = f"http://127.0.0.1:{port}/api/v1/sync"
    body: dict[str, Any] = {"sources": sources or None, "channels": channels or None}
    if trust:
        body["trust"] = trust.read_text()
    asked = time.time()
    request = urllib.request.Request(base, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            r.read()
    except urllib.error.HTTPError as exc:
        raise ClassboxError(f"the running box refused: {json.loads(exc.read() or b'{}').get('error', exc)}") from None
    except OSError as exc:
        raise ClassboxError(f"cannot reach the running box on port {port}: {exc}") from None
    click.echo(f"the box is serving; it runs the sync (port {port})", err=True)
    deadline = time.monotonic() + 24 * 3600
    with ProgressLine() as line:
        while time.monotonic() < deadline:
            time.sleep(0.5)
            with urllib.request.urlopen(base, timeout=10) as r:
                status = json.loads(r.read())
            done = [run for run in status["runs"] if run["started_at"] >= asked - 1]
            if done:
                break
            if status["bytes_total"]:
                p = Progress(status["channel"] or "", status["bytes_done"], status["bytes_total"],
                             status["lesson"] or "")
                line.show(p, rate=status["rate"], eta=status["eta_s"])
    run = done[0]
    click.echo(f"sync {'done' if run['ok'] else 'incomplete'}: {run['files']} files, {run['bytes'] / 1e6:.1f} MB; "
               f"activated: {', '.join(run['activated']) or 'nothing new'}")
    for error in run["errors"]:
        click.echo(f"  ✗ {error}", err=True)
    if not run["ok"]:
        sys.exit(1)


def _report(result: dict[str, Any]) -> None:
    if result["unchanged"]:
        click.echo(f"channel {result['channel']} version {result['version']} is up to date; nothing to do")
        return
    was = "new" if result["previous_version"] is None else f"was version {result['previous_version']}"
    state = "active" if result["activated"] else "not yet active"
    click.echo(f"channel {result['channel']} version {result['version']} ({was}, {state}): "
               f"{result['lessons']} lessons, {result['files']} files fetched ({result['bytes'] / 1e6:.1f} MB)")
    for error in result["errors"]:
        click.echo(f"  ✗ {error}", err=True)
    if result["missing_lessons"]:
        click.echo(f"  still missing: {'、'.join(result['missing_lessons'])}", err=True)


class ProgressLine:
    """A one-line progress display on stderr: bar, bytes, rate, ETA and the current lesson."""

    def __init__(self, width: int = 24) -> None:
        self.width = width
        self.last = 0.0
        self.shown = False

    def __enter__(self) -> ProgressLine:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.shown:
            click.echo("", err=True)

    def clear(self) -> None:
        """End the current line so that other output starts on its own."""
        if self.shown:
            click.echo("", err=True)
            self.shown = False

    def show_count(self, p: Progress, unit: str = "课", note: str = "") -> None:
        """Redraw a bar of things done (not bytes), with a note such as bytes fetched, at most ten times a second."""
        now = time.monotonic()
        if now - self.last < 0.1 and p.done < p.total or not p.total:
            return
        self.last = now
        filled = int(self.width * p.done / p.total)
        parts = [f"[{'#' * filled}{'.' * (self.width - filled)}]", f"{p.done}/{p.total}", unit, note, p.lesson[:30]]
        line = "\r" + " ".join(x for x in parts if x)
        click.echo(line.ljust(100), nl=False, err=True)
        self.shown = True

    def show(self, p: Progress, rate: float | None = None, eta: float | None = None) -> None:
        """Redraw at most ten times a second, and at the end."""
        now = time.monotonic()
        if now - self.last < 0.1 and p.done < p.total:
            return
        self.last = now
        if not p.total:
            return
        filled = int(self.width * p.done / p.total)
        if rate is None:  # figures of a run in this process; a server reports its own
            rate, eta = p.rate(), p.eta()
        eta_text = "--:--" if eta is None else f"{int(eta) // 60:02d}:{int(eta) % 60:02d}"
        line = (f"\r[{'#' * filled}{'.' * (self.width - filled)}] {p.done / 1e6:.1f}/{p.total / 1e6:.1f} MB "
                f"{rate / 1e6:.2f} MB/s ETA {eta_text} {p.lesson[:20]}")
        click.echo(line.ljust(100), nl=False, err=True)
        self.shown = True
