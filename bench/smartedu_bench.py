#!/usr/bin/env python3
"""Benchmark `classbox channel build --from-smartedu` against plain tools on the same files, in one run.

A synthetic catalogue in the national platform's format (tag tree, chapter tree, data_version.json,
lesson package details with relations.national_course_resource and ti_items) is written first:
--packages lesson packages × --periods 课时, each 课时 with an MP4 video (random bytes behind an
'ftyp' box), 4 PDFs (课件, 教学设计, 学习任务单, 课后练习), 2 page images of the 课件 and the
video's thumbnail; --size-mb sets the total. Then, each RUNS times, the median reported:

  1. local build (--files FILES_DIR) into an empty ROOT vs `cp -r FILES_DIR X` + `sha256sum` of
     every copy (one shell command, timed whole);
  2. the same build again into the same ROOT: it must copy nothing ("0 copied"), change no blob
     (mtime and inode), and read hardly any of FILES_DIR (/proc/PID/io rchar); vs a stat walk of
     FILES_DIR (`find FILES_DIR -type f -printf '%s %T@\\n' | wc -l`);
  3. download build (--download --header 'Authorization: …') from a real nginx on 127.0.0.1 that
     answers 403 without the header vs one `curl -K LIST` process fetching every file in turn
     (keep-alive, the same header) + `sha256sum` of every file;
  4. peak RSS of the build process (getrusage of that child) against file size: one 课时 whose
     video is --rss-small-mb vs --rss-mb, local and download; a streaming build's peak must not
     grow with the file.

classbox fsyncs every blob and its bookkeeping; cp and curl do not. Everything is read from the
page cache (the files were just written or read; dropping caches needs root). A build that is
slower than the target is run once more under cProfile and the top functions are printed.

Needs nginx and curl (`apt-get install nginx curl`) and coreutils; installs nothing itself. Every
child process is killed on exit, Ctrl-C included; the temporary folder under --work is removed;
the whole run stops at --max-seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import platform
import pstats
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serve_bench  # noqa: E402  (same folder: process handling, logging, ports, tables)
from serve_bench import Children, log  # noqa: E402
from sync_bench import child_env, succeeded  # noqa: E402

HERE = Path(__file__).resolve().parent
MB = 1000 * 1000
MiB = 1024 * 1024
KiB = 1024

RUNS = 3
TOKEN = "Bearer smartedu-bench-0123456789abcdef"
PDF_BYTES = 200 * 1000  # each of the 4 documents of a 课时
PAGE_BYTES = 100 * 1000  # each of the 2 page images of the 课件
THUMB_BYTES = 20 * 1000  # the video's thumbnail (the lesson's cover)
PDFS = (("coursewares", "课件"), ("lesson_plandesign", "教学设计"), ("learning_task", "学习任务单"),
        ("after_class_exercise", "课后练习"))
FILES_PER_PERIOD = 1 + 1 + len(PDFS) + 2  # video, thumbnail, PDFs, page images
PERIOD_NAMES = ("第一课时", "第二课时", "第三课时", "第四课时", "第五课时", "第六课时")
UPDATE = "2025-09-01T10:00:00.000+0800"
VERSION = 1760000000000
TM = "7a1e6d52-9b3c-4f08-8d21-3c5e0f6a9b10"  # the textbook (教材) every package belongs to
UNIT = "a0000000-0000-4000-8000-000000000001"
TAGS = [("zxxxd", "e7bbb2de-0590-11ed-9c79-92fc3b3249d5", "小学"),
        ("zxxnj", "e7bbd296-0590-11ed-9c79-92fc3b3249d5", "一年级"),
        ("zxxxk", "6a74a8f2-0772-11ed-ac74-092ab92074e6", "数学"),
        ("zxxbb", "44bee6a2-54e6-11ed-9c34-850ba61fa9f4", "人教版"),
        ("zxxcc", "ff8080814371757b014390f883db0453", "上册")]

TARGET_LOCAL = 3.0  # classbox build ÷ (cp -r + sha256sum), at most
TARGET_DOWNLOAD = 2.0  # classbox download build ÷ (curl + sha256sum), at most
TARGET_RSS_SLOPE = 0.05  # MB of peak RSS per MB of file, at most: a streaming build's peak stays flat
PROFILE_TOP = 18
PROFILE_CALLERS = 3  # the most costly functions whose callers are listed too

# nginx stands in for the platform's file hosts: it answers only with the operator's header, and
# maps /<set>/edu_product/esp/assets/<rid>.t/zh-CN/<ms>/transcode/<rest> to <tmp>/<set>/files/<rid>/<rest>.
NGINX_CONF = serve_bench.NGINX_HEAD + """\
    server {{
        listen 127.0.0.1:{port};
        root {tmp}/empty;
        if ($http_authorization != "{token}") {{ return 403; }}
        location ~ ^/([a-z0-9-]+)/edu_product/esp/assets/([0-9a-f-]+)\\.t/zh-CN/[0-9]+/transcode/(.+)$ {{
            alias {tmp}/$1/files/$2/$3;
        }}
    }}
}}
"""


# --------------------------------------------------------------------------- time and children


class Budget:
    """The whole run's time cap: every child's timeout is cut to what is left."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.seconds = seconds

    def left(self) -> float:
        """Seconds left."""
        return self.deadline - time.monotonic()

    def timeout(self, want: float) -> float:
        """Return want, cut to the time left; raise when none is."""
        left = self.left()
        if left < 1:
            raise RuntimeError(f"the run's time cap of {self.seconds:.0f} s (--max-seconds) is reached")
        return min(want, left)


@dataclass
class Run:
    """One child run: exit code, wall s, user+sys CPU s, peak RSS, bytes read and written by read()/write()."""

    rc: int
    wall: float
    cpu: float
    maxrss: int  # bytes
    rchar: int
    wchar: int
    out: str
    err: str


def measured(children: Children, cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> Run:
    """Run a child in a session of its own; return its wall time and, from wait4 and /proc, its own figures.

    The child is waited for without being reaped (waitid WNOWAIT) so that /proc/PID/io can still be read,
    then reaped with wait4, whose rusage is that child's alone (peak RSS included).
    """
    with tempfile.TemporaryFile() as out_f, tempfile.TemporaryFile() as err_f:
        t0 = time.monotonic()
        # cwd is bench/, not the checkout (as in sync_bench): `python -m` puts the cwd first on sys.path.
        proc = children.popen(cmd, stdout=out_f, stderr=err_f, stdin=subprocess.DEVNULL, env=env,
                              cwd=str(HERE), start_new_session=True)
        ended = threading.Event()
        stamp: list[float] = []

        def waiter() -> None:
            try:
                os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
            except ChildProcessError:
                pass
            stamp.append(time.monotonic())
            ended.set()

        threading.Thread(target=waiter, daemon=True).start()
        killed = not ended.wait(timeout)
        if killed:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            ended.wait(10)
        wall = (stamp[0] if stamp else time.monotonic()) - t0
        io: dict[str, int] = {}
        try:
            for line in Path(f"/proc/{proc.pid}/io").read_text().splitlines():
                k, _, v = line.partition(":")
                io[k.strip()] = int(v)
        except (OSError, ValueError):
            pass
        _, status, ru = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out_f.seek(0)
        err_f.seek(0)
        out = out_f.read().decode(errors="replace")
        err = err_f.read().decode(errors="replace")
    if killed:
        err += f"\n[bench] killed after {timeout:.0f} s"
    return Run(proc.returncode, wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss * KiB,
               io.get("rchar", -1), io.get("wchar", -1), out, err)


def run_ok(children: Children, cmd: list[str], timeout: float, what: str,
           env: dict[str, str] | None = None) -> Run:
    """Run a child and raise unless it exits 0."""
    r = measured(children, cmd, timeout, env)
    succeeded(r.rc, r.out + r.err, cmd, what)
    return r


def shell(children: Children, script: str, timeout: float, what: str) -> Run:
    """Run a reference command line with bash, raising unless it exits 0."""
    return run_ok(children, ["bash", "-c", "set -euo pipefail; " + script], timeout, what)


def bench_env() -> dict[str, str]:
    """classbox's environment: sync_bench's (no CLASSBOX_* from the caller, no margin), and no proxy."""
    env = child_env()
    for k in list(env):
        if k.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
            del env[k]
    return env


# --------------------------------------------------------------------------- the synthetic catalogue


@dataclass
class Catalogue:
    """A catalogue folder, its files folder and every file a build fetches."""

    name: str  # the URL prefix nginx maps to this set's files folder
    root: Path
    periods: int
    files: list[tuple[str, str, int]] = field(default_factory=list)  # (url path, path under files/, size)

    @property
    def catalog(self) -> Path:
        return self.root / "catalog"

    @property
    def folder(self) -> Path:
        return self.root / "files"

    @property
    def total(self) -> int:
        return sum(n for _, _, n in self.files)

    @property
    def largest(self) -> int:
        return max(n for _, _, n in self.files)


def write_json(path: Path, doc: Any) -> None:
    """Write JSON as the platform does (UTF-8, not ASCII-escaped)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=1), encoding="utf-8")


def _tag_list(extra: tuple[tuple[str, str, str], ...] = ()) -> list[dict[str, Any]]:
    return [{"tag_id": i, "tag_name": n, "tag_dimension_id": d, "order_num": k}
            for k, (d, i, n) in enumerate([*TAGS, *extra])]


def make_catalogue(root: Path, name: str, packages: int, periods: int, video_bytes: int, base_url: str) -> Catalogue:
    """Write a catalogue of packages × periods 课时 and its files under root; base_url is where nginx serves them."""
    cat = Catalogue(name, root, packages * periods)

    def put(rid: str, rest: str, head: bytes, size: int) -> dict[str, Any]:
        """Write one file of random bytes (with head first) and return its ti_items entry."""
        path = cat.folder / rid / rest
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.md5(usedforsecurity=False)
        with open(path, "wb") as f:
            left, first = size, head
            while left:
                chunk = (first + os.urandom(min(MiB, left) - len(first)))[:left]
                first = b""
                digest.update(chunk)
                f.write(chunk)
                left -= len(chunk)
        url_path = f"/{name}/edu_product/esp/assets/{rid}.t/zh-CN/1700000000000/transcode/{rest}"
        cat.files.append((url_path, f"{rid}/{rest}", size))
        return {"ti_storage": f"cs_path:${{ref-path}}{url_path}", "ti_storages": [base_url + url_path],
                "ti_file_flag": rest.rsplit(".", 1)[0], "ti_is_source_file": False, "ti_format": rest.rsplit(".", 1)[1],
                "custom_properties": {}, "ti_md5": digest.hexdigest(), "ti_size": size}

    def pages(rid: str, n: int) -> dict[str, Any]:
        """Write n page images and return the folder's ti_items entry (no size, no md5: as the platform)."""
        for k in range(1, n + 1):
            put(rid, f"image/{k}.jpg", b"\xff\xd8\xff\xe0\0\x10JFIF\0", PAGE_BYTES)
        url_path = f"/{name}/edu_product/esp/assets/{rid}.t/zh-CN/1700000000000/transcode/image"
        return {"ti_md5": "", "ti_size": 0, "ti_storage": f"cs_path:${{ref-path}}{url_path}",
                "ti_storages": [base_url + url_path], "ti_file_flag": "image", "ti_format": "folder",
                "custom_properties": {"requirements": [{"name": "pagesize", "type": "QUOTA", "value": str(n)}]}}

    def sub(rid: str, code: str, kind: str, title: str, items: list[dict[str, Any]],
            period: str | None) -> dict[str, Any]:
        tags = [{"tag_id": "5036342730", "tag_name": period, "tag_dimension_id": "bkks", "order_num": 0}
                ] if period else []
        tags.append({"tag_id": "50203637", "tag_name": kind, "tag_dimension_id": "bklx", "order_num": 3})
        return {"id": rid, "global_title": {"zh-CN": title}, "resource_type_code": code,
                "resource_type_code_name": kind, "title": kind, "update_time": UPDATE, "tag_list": tags,
                "ti_items": items, "status": "ONLINE", "custom_properties": {}}

    write_json(cat.catalog / "version" / "data_version.json",
               {"module": "national_lesson", "module_version": VERSION,
                "urls": "https://s-file-1.ykt.cbern.com.cn/zxx/ndrs/national_lesson/teachingmaterials/part_100.json"})
    node: dict[str, Any] = {"tag_id": "5136342961", "tag_dimension_id": "zxxxjjc", "tag_name": "新教材",
                            "hierarchies": None, "ext": {"has_res": True}}
    for dim, tid, tname in reversed(TAGS):
        node = {"tag_id": tid, "tag_dimension_id": dim, "tag_name": tname, "ext": {},
                "hierarchies": [{"hierarchy_name": "x", "ext": {}, "children": [node]}]}
    write_json(cat.catalog / "tags" / "national_lesson_tag.json",
               {"tag_path": "2RC4Xgwn", "hierarchies": [{"hierarchy_name": "学段", "ext": {}, "children": [node]}]})
    chapters = [f"b0000000-0000-4000-8000-{p:012x}" for p in range(packages)]
    write_json(cat.catalog / "trees" / f"{TM}.json", [
        {"id": UNIT, "title": "第一单元", "child_nodes": [
            {"id": c, "title": f"{p + 1} 第{p + 1}课", "child_nodes": []} for p, c in enumerate(chapters)]}])
    write_json(cat.catalog / "teachingmaterials" / "part_100.json", [
        {"id": TM, "title": "义务教育教科书·数学一年级上册", "resource_type_code": "teachingmaterials",
         "resource_type_code_name": "教材", "tag_list": _tag_list(), "ti_items": [], "update_time": UPDATE}])
    for p in range(packages):
        pid = f"{p:08x}-0000-4000-8000-000000000000"
        title = f"{p + 1} 第{p + 1}课"
        subs = []
        for n in range(1, periods + 1):
            period = PERIOD_NAMES[(n - 1) % len(PERIOD_NAMES)] if n <= len(PERIOD_NAMES) else f"第{n}课时"
            rid = [f"{p:08x}-0000-4000-8000-{n:08x}{k:04x}" for k in range(len(PDFS) + 1)]
            subs.append(sub(rid[0], "micro_lesson_video", "微课视频", f"{title}（{period}）", [
                put(rid[0], "video.mp4", b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2mp41", video_bytes),
                put(rid[0], "thumbnail.png", b"\x89PNG\r\n\x1a\n", THUMB_BYTES)], period))
            for k, (code, kind) in enumerate(PDFS, 1):
                items = [put(rid[k], "pdf.pdf", b"%PDF-1.4\n", PDF_BYTES)]
                if code == "coursewares":
                    items.insert(0, pages(rid[k], 2))
                # 课件 and 教学设计 carry no 课时 tag, as on the platform: they take the video's.
                subs.append(sub(rid[k], code, kind, f"{title}（{period}）", items,
                                None if code in ("coursewares", "lesson_plandesign") else period))
        write_json(cat.catalog / "details" / f"{pid}.json", {
            "id": pid, "global_title": {"zh-CN": title}, "title": title, "resource_type_code": "national_lesson",
            "resource_type_code_name": "国家课", "update_time": UPDATE, "status": "ONLINE",
            "tag_list": [{"tag_id": "502036371442", "tag_name": "课程包", "tag_dimension_id": "bklx",
                          "order_num": 6}, *_tag_list((("zxxxjjc", "5136342961", "新教材"),))],
            "chapter_ids": [UNIT, chapters[p]], "chapter_paths": [f"{UNIT}/{chapters[p]}"],
            "teachmeterial_ids": [TM], "teachingmaterial_id": TM,
            "teacher_list": [{"id": "t1", "name": "李老师", "intro": "一级教师"}],
            "relations": {"national_course_resource": subs}})
    return cat


def warm(folder: Path) -> None:
    """Read every file under folder once, so that it is in the page cache."""
    for dirpath, _, names in os.walk(folder):
        for n in names:
            with open(os.path.join(dirpath, n), "rb") as f:
                while f.read(8 * MiB):
                    pass


# --------------------------------------------------------------------------- classbox and its checks


SUMMARY_FILES = re.compile(r"files: (\d+) copied \(([\d.]+) MB\), (\d+) downloaded \(([\d.]+) MB\), "
                           r"(\d+) already in place")
SUMMARY_BUILT = re.compile(r"built channel \S+ version \S+: (\d+) lessons")
SUMMARY_KIND = re.compile(r"present\s+(\d+)\s+missing\s+(\d+)\s+skipped\s+(\d+)")


def build_cmd(cmd: list[str], cat: Catalogue, key: Path, out: Path, download: bool) -> list[str]:
    """The classbox command line of a local (--files) or download (--download --header) build."""
    full = [*cmd, "channel", "build", "--from-smartedu", str(cat.catalog), "--key", str(key), "--out", str(out)]
    if download:
        return [*full, "--download", "--header", f"Authorization: {TOKEN}"]
    return [*full, "--files", str(cat.folder)]


def summary(r: Run, cat: Catalogue) -> dict[str, int]:
    """Parse a build's summary and raise unless every lesson and every file is there."""
    text = r.out + r.err
    built, files = SUMMARY_BUILT.search(text), SUMMARY_FILES.search(text)
    if not built or not files:
        raise RuntimeError("the build printed no summary:\n  " + "\n  ".join(text.strip().splitlines()[-12:]))
    kinds = [tuple(map(int, m)) for m in SUMMARY_KIND.findall(text)]
    got = {"lessons": int(built.group(1)), "copied": int(files.group(1)), "downloaded": int(files.group(3)),
           "in_place": int(files.group(5)), "missing": sum(k[1] for k in kinds), "skipped": sum(k[2] for k in kinds)}
    if got["lessons"] != cat.periods or got["missing"] or got["skipped"]:
        raise RuntimeError(f"the build made {got} of {cat.periods} lessons:\n  "
                           + "\n  ".join(text.strip().splitlines()))
    return got


def blob_stats(root: Path) -> dict[str, tuple[int, int, int]]:
    """Return every blob's (mtime ns, inode, size) under a mirror root."""
    out = {}
    for p in (root / "blobs" / "sha256").rglob("*"):
        if p.is_file():
            st = p.stat()
            out[p.name] = (st.st_mtime_ns, st.st_ino, st.st_size)
    return out


def check_blobs(cat: Catalogue, root: Path) -> None:
    """Raise unless the store holds exactly the catalogue's files (by count and bytes); hashes are classbox's."""
    stats = blob_stats(root)
    if len(stats) != len(cat.files) or sum(s[2] for s in stats.values()) != cat.total:
        raise RuntimeError(f"{root} holds {len(stats)} blobs, {sum(s[2] for s in stats.values())} bytes; "
                           f"expected {len(cat.files)} files, {cat.total} bytes")


# --------------------------------------------------------------------------- nginx


def start_nginx(children: Children, nginx: str, curl: str, tmp: Path) -> int:
    """Start nginx serving every set's files only to the header, check it with a probe file; return its port."""
    (tmp / "empty").mkdir(exist_ok=True)
    probe = tmp / "probe" / "files" / "00000000-0000-4000-8000-000000000000" / "probe.bin"
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_bytes(b"probe" * 100)
    url_path = "/probe/edu_product/esp/assets/00000000-0000-4000-8000-000000000000.t/zh-CN/1/transcode/probe.bin"
    _, (port,) = serve_bench.launch_nginx(children, nginx, tmp,
                                          lambda port: NGINX_CONF.format(tmp=tmp, port=port, token=TOKEN), [url_path],
                                          {"Authorization": TOKEN})
    url = f"http://127.0.0.1:{port}{url_path}"
    for header, expected in ((["-H", f"Authorization: {TOKEN}"], "200 500"), ([], "403 ")):
        got = subprocess.run([curl, "-s", "--noproxy", "*", "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                              *header, url], capture_output=True, text=True, timeout=10).stdout
        if not got.startswith(expected):
            raise RuntimeError(f"nginx answered {got!r} {'with' if header else 'without'} the header to GET {url}")
    log(f"nginx on 127.0.0.1:{port}: 200 with the header, 403 without")
    return port


# --------------------------------------------------------------------------- measures


def reference_local(children: Children, cat: Catalogue, copy: Path, timeout: float) -> float:
    """`cp -r FILES_DIR COPY` and sha256sum of every copy, as one shell command; return its wall seconds."""
    r = shell(children, f"cp -r {shlex.quote(str(cat.folder))} {shlex.quote(str(copy))} && "
              f"find {shlex.quote(str(copy))} -type f -exec sha256sum {{}} + | wc -l", timeout, "cp -r + sha256sum")
    if int(r.out.split()[0]) != len(cat.files):
        raise RuntimeError(f"sha256sum hashed {r.out.strip()} files, not {len(cat.files)}")
    shutil.rmtree(copy)
    return r.wall


def record_build(runs: dict[str, list[Any]], b: Run) -> None:
    """Note one build's wall time, CPU, peak RSS and bytes read and written."""
    for name, value in (("build", b.wall), ("build_cpu", b.cpu), ("build_rss", b.maxrss), ("build_rchar", b.rchar),
                        ("build_wchar", b.wchar)):
        runs[name].append(value)


def measure_local(children: Children, cmd: list[str], cat: Catalogue, key: Path, tmp: Path,
                  budget: Budget) -> dict[str, Any]:
    """Local build vs cp -r + sha256sum; the rerun vs a stat walk; RUNS times each, taking turns."""
    env = bench_env()
    slow = 60 + cat.total / (5 * MB)
    runs: dict[str, list[Any]] = {k: [] for k in ("build", "rerun", "reference", "walk", "build_rss", "rerun_rss",
                                                  "build_rchar", "build_wchar", "rerun_rchar", "rerun_wchar",
                                                  "build_cpu", "rerun_copied", "changed_blobs")}
    for i in range(RUNS):
        root = tmp / f"root-local-{i}"
        copy = tmp / f"ref-copy-{i}"
        if i % 2:  # taking turns: odd runs start with the reference
            runs["reference"].append(reference_local(children, cat, copy, budget.timeout(slow)))
        b = run_ok(children, build_cmd(cmd, cat, key, root, False), budget.timeout(slow), "local build", env)
        got = summary(b, cat)
        if got["copied"] != len(cat.files):
            raise RuntimeError(f"the first build copied {got['copied']} files, not {len(cat.files)}")
        check_blobs(cat, root)
        if i == 0:
            run_ok(children, [*cmd, "channel", "verify", str(root), "--pubkey", str(key.with_suffix(".pub"))],
                   budget.timeout(slow), "channel verify", env)
        before = blob_stats(root)
        time.sleep(0.02)  # a rewritten blob would get a later mtime than before's
        again = run_ok(children, build_cmd(cmd, cat, key, root, False), budget.timeout(slow), "local rebuild", env)
        got_again = summary(again, cat)
        after = blob_stats(root)
        changed = sum(1 for k, v in before.items() if after.get(k) != v) + len(set(after) - set(before))
        walk = shell(children, f"find {shlex.quote(str(cat.folder))} -type f -printf '%s %T@\\n' | wc -l",
                     budget.timeout(60), "find")
        if not i % 2:
            runs["reference"].append(reference_local(children, cat, copy, budget.timeout(slow)))
        shutil.rmtree(root)
        record_build(runs, b)
        runs["rerun"].append(again.wall)
        runs["rerun_rss"].append(again.maxrss)
        runs["rerun_rchar"].append(again.rchar)
        runs["rerun_wchar"].append(again.wchar)
        runs["rerun_copied"].append(got_again["copied"])
        runs["changed_blobs"].append(changed)
        runs["walk"].append(walk.wall)
        log(f"    run {i + 1}: build {b.wall:.2f} s ({b.cpu:.2f} s CPU, read {b.rchar / MB:.0f} MB, wrote "
            f"{b.wchar / MB:.0f} MB, peak RSS {b.maxrss / MiB:.0f} MiB), cp -r + sha256sum "
            f"{runs['reference'][-1]:.2f} s; rerun {again.wall:.2f} s, "
            f"{got_again['copied']} copied, {got_again['in_place']} in place, read {again.rchar / MB:.1f} MB, "
            f"{changed} blobs changed; find {walk.wall * 1000:.0f} ms")
    med = {k: statistics.median(v) for k, v in runs.items()}
    return {"runs": runs, "median": med,
            "ratio": med["build"] / med["reference"],
            "ratio_net": max(0.0, med["build"] - med["rerun"]) / med["reference"],
            "rerun_ratio": med["rerun"] / med["walk"],
            "rerun_ok": all(n == 0 for n in runs["rerun_copied"]) and all(n == 0 for n in runs["changed_blobs"])}


def curl_config(cat: Catalogue, port: int, dest: Path) -> Path:
    """Write a curl config fetching every file of the catalogue, in the order classbox does, with the header."""
    lines = [f'header = "Authorization: {TOKEN}"', "fail", "silent", "create-dirs", 'noproxy = "*"']
    for url_path, rel, _ in cat.files:
        lines += [f'url = "http://127.0.0.1:{port}{url_path}"', f'output = "{dest / rel}"']
    path = dest.parent / f"{dest.name}.curlrc"
    path.write_text("\n".join(lines) + "\n")
    return path


def reference_download(children: Children, curl: str, cat: Catalogue, port: int, dest: Path,
                       timeout: float) -> float:
    """One curl process fetching every file (with the header) and sha256sum of each; return its wall seconds."""
    rc = curl_config(cat, port, dest)
    r = shell(children, f"{shlex.quote(curl)} -K {shlex.quote(str(rc))} && "
              f"find {shlex.quote(str(dest))} -type f -exec sha256sum {{}} + | wc -l", timeout, "curl + sha256sum")
    got = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    if int(r.out.split()[0]) != len(cat.files) or got != cat.total:
        raise RuntimeError(f"curl fetched {r.out.strip()} files, {got} bytes; expected {len(cat.files)}, {cat.total}")
    shutil.rmtree(dest)
    rc.unlink()
    return r.wall


def measure_download(children: Children, cmd: list[str], curl: str, cat: Catalogue, key: Path, port: int,
                     tmp: Path, budget: Budget) -> dict[str, Any]:
    """Download build vs one curl process for all files + sha256sum; RUNS times each, taking turns."""
    env = bench_env()
    slow = 60 + cat.total / (2 * MB)
    runs: dict[str, list[Any]] = {k: [] for k in ("build", "reference", "build_rss", "build_cpu", "build_rchar",
                                                  "build_wchar")}
    for i in range(RUNS):
        root = tmp / f"root-dl-{i}"
        dest = tmp / f"ref-dl-{i}"
        if i % 2:  # taking turns: odd runs start with the reference
            runs["reference"].append(reference_download(children, curl, cat, port, dest, budget.timeout(slow)))
        b = run_ok(children, build_cmd(cmd, cat, key, root, True), budget.timeout(slow), "download build", env)
        got = summary(b, cat)
        if got["downloaded"] != len(cat.files) - cat.periods * 2:  # page images are fetched whole, not counted
            log(f"    note: the summary says {got['downloaded']} downloaded")
        check_blobs(cat, root)
        if i == 0:
            run_ok(children, [*cmd, "channel", "verify", str(root), "--pubkey", str(key.with_suffix(".pub"))],
                   budget.timeout(slow), "channel verify", env)
        if not i % 2:
            runs["reference"].append(reference_download(children, curl, cat, port, dest, budget.timeout(slow)))
        shutil.rmtree(root)
        record_build(runs, b)
        log(f"    run {i + 1}: download build {b.wall:.2f} s ({b.cpu:.2f} s CPU, wrote {b.wchar / MB:.0f} MB, "
            f"peak RSS {b.maxrss / MiB:.0f} MiB), "
            f"curl + sha256sum {runs['reference'][-1]:.2f} s")
    med = {k: statistics.median(v) for k, v in runs.items()}
    return {"runs": runs, "median": med, "ratio": med["build"] / med["reference"]}


def measure_rss(children: Children, cmd: list[str], sets: dict[str, Catalogue], key: Path, tmp: Path,
                budget: Budget) -> dict[str, Any]:
    """Peak RSS of local and download builds of one 课时 with a small and a big video; RUNS times each."""
    env = bench_env()
    res: dict[str, Any] = {}
    for mode in ("local", "download"):
        for which, cat in sets.items():
            peaks = []
            for i in range(RUNS):
                root = tmp / f"root-rss-{which}-{mode}-{i}"
                r = run_ok(children, build_cmd(cmd, cat, key, root, mode == "download"),
                           budget.timeout(60 + cat.total / (2 * MB)), f"{mode} build ({which})", env)
                summary(r, cat)
                check_blobs(cat, root)
                shutil.rmtree(root)
                peaks.append(r.maxrss)
            res[f"{mode}_{which}"] = {"runs": peaks, "median": statistics.median(peaks), "largest": cat.largest}
        small, big = res[f"{mode}_small"], res[f"{mode}_big"]
        slope = (big["median"] - small["median"]) / (big["largest"] - small["largest"])
        res[f"{mode}_slope"] = slope
        log(f"    {mode}: peak RSS {small['median'] / MiB:.1f} MiB with a {small['largest'] / MB:.0f} MB video, "
            f"{big['median'] / MiB:.1f} MiB with {big['largest'] / MB:.0f} MB: {slope:+.4f} MB per MB")
    return res


def profile(children: Children, cmd: list[str], cat: Catalogue, key: Path, tmp: Path, download: bool,
            budget: Budget) -> list[str]:
    """Build once under cProfile; return the top functions by own time and by cumulative time, as text lines."""
    if cmd[1:3] != ["-m", "classbox"]:
        return ["(profiling needs the default --classbox-cmd: python -m classbox)"]
    prof = tmp / ("download.prof" if download else "local.prof")
    root = tmp / "root-profile"
    full = [cmd[0], "-m", "cProfile", "-o", str(prof), "-m", "classbox", *build_cmd(cmd, cat, key, root, download)[3:]]
    r = run_ok(children, full, budget.timeout(120 + cat.total / MB), "build under cProfile", bench_env())
    shutil.rmtree(root, ignore_errors=True)
    lines = [f"{'download' if download else 'local'} build under cProfile: {r.wall:.2f} s wall, {r.cpu:.2f} s CPU"]
    for order in ("tottime", "cumulative"):
        st = pstats.Stats(str(prof))
        total = st.total_tt  # type: ignore[attr-defined]
        rows = []
        for (file, line, fn), (_cc, nc, tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
            rows.append((tt if order == "tottime" else ct, nc, tt, ct, f"{Path(file).name}:{line}({fn})"))
        rows.sort(reverse=True)
        lines.append(f"  top {PROFILE_TOP} by {order} (of {total:.2f} s profiled):")
        lines.append(f"    {'calls':>8} {'own s':>8} {'cum s':>8}  function")
        for _key, nc, tt, ct, name in rows[:PROFILE_TOP]:
            lines.append(f"    {nc:>8} {tt:>8.3f} {ct:>8.3f}  {name}")
        if order == "tottime":  # who calls the few that cost most: where the time is spent, by call site
            for fkey in sorted(st.stats, key=lambda k: -st.stats[k][2])[:PROFILE_CALLERS]:  # type: ignore[attr-defined]
                callers = st.stats[fkey][4]  # type: ignore[attr-defined]
                lines.append(f"  callers of {Path(fkey[0]).name}:{fkey[1]}({fkey[2]}):")
                for (file, line, fn), (_cc, nc, tt, _ct) in sorted(callers.items(), key=lambda kv: -kv[1][2])[:6]:
                    lines.append(f"    {nc:>8} {tt:>8.3f}           {Path(file).name}:{line}({fn})")
    return lines


# --------------------------------------------------------------------------- report


def build_rows(res: dict[str, Any], cat: Catalogue) -> list[dict[str, str]]:
    """Turn the results into table rows: measure, classbox, reference, ratio, target, result."""
    loc, dl, rss = res["local"], res["download"], res["rss"]
    lm, dm = loc["median"], dl["median"]
    mb = cat.total / MB

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    rows = [
        {"measure": f"local build (--files), {mb:.0f} MB in {len(cat.files)} files, s "
                    f"(vs cp -r + sha256sum)",
         "classbox": f"{lm['build']:.2f} ({mb / lm['build']:.0f} MB/s)",
         "reference": f"{lm['reference']:.2f} ({mb / lm['reference']:.0f} MB/s)",
         "ratio": f"{loc['ratio']:.2f}×", "target": f"≤ {TARGET_LOCAL:g}×",
         "result": verdict(loc["ratio"] <= TARGET_LOCAL)},
        {"measure": f"local build net of the rerun's {lm['rerun']:.2f} s fixed cost",
         "classbox": f"{lm['build'] - lm['rerun']:.2f}", "reference": f"{lm['reference']:.2f}",
         "ratio": f"{loc['ratio_net']:.2f}×", "target": "(reported)", "result": "—"},
        {"measure": "rerun into the same ROOT, s (vs find -printf stat walk of FILES_DIR)",
         "classbox": f"{lm['rerun']:.2f}", "reference": f"{lm['walk']:.3f}",
         "ratio": f"{loc['rerun_ratio']:.0f}×", "target": "(reported)", "result": "—"},
        {"measure": "rerun: files copied / blobs whose mtime or inode changed (all runs)",
         "classbox": f"{max(loc['runs']['rerun_copied'])} / {max(loc['runs']['changed_blobs'])}",
         "reference": "0 / 0", "ratio": "", "target": "0 / 0", "result": verdict(loc["rerun_ok"])},
        {"measure": "rerun: bytes read (rchar; Python modules and catalogue included) vs FILES_DIR",
         "classbox": f"{lm['rerun_rchar'] / MB:.1f} MB", "reference": f"{mb:.0f} MB",
         "ratio": f"{lm['rerun_rchar'] / cat.total:.3f}", "target": "(reported)", "result": "—"},
        {"measure": "local build: bytes read / written (rchar / wchar) ÷ bytes of the files",
         "classbox": f"{lm['build_rchar'] / MB:.0f} / {lm['build_wchar'] / MB:.0f} MB", "reference": f"{mb:.0f} MB",
         "ratio": f"{lm['build_rchar'] / cat.total:.2f} / {lm['build_wchar'] / cat.total:.2f}",
         "target": "(reported)", "result": "—"},
        {"measure": "download build (--download --header) from nginx, s (vs one curl -K for all + sha256sum)",
         "classbox": f"{dm['build']:.2f} ({mb / dm['build']:.0f} MB/s)",
         "reference": f"{dm['reference']:.2f} ({mb / dm['reference']:.0f} MB/s)",
         "ratio": f"{dl['ratio']:.2f}×", "target": f"≤ {TARGET_DOWNLOAD:g}×",
         "result": verdict(dl["ratio"] <= TARGET_DOWNLOAD)},
        {"measure": "download build: bytes written (wchar) ÷ bytes of the files",
         "classbox": f"{dm['build_wchar'] / MB:.0f} MB", "reference": f"{mb:.0f} MB",
         "ratio": f"{dm['build_wchar'] / cat.total:.2f}", "target": "(reported)", "result": "—"},
        {"measure": f"peak RSS of the {mb:.0f} MB builds, local / download",
         "classbox": f"{lm['build_rss'] / MiB:.0f} / {dm['build_rss'] / MiB:.0f} MiB",
         "reference": f"largest file {cat.largest / MB:.1f} MB", "ratio": "", "target": "(reported)", "result": "—"},
    ]
    for mode in ("local", "download"):
        s, b = rss[f"{mode}_small"], rss[f"{mode}_big"]
        slope = rss[f"{mode}_slope"]
        rows.append({"measure": f"peak RSS, {mode} build of one 课时: video {s['largest'] / MB:.0f} MB → "
                                f"{b['largest'] / MB:.0f} MB (MB of RSS per MB of file)",
                     "classbox": f"{s['median'] / MiB:.1f} → {b['median'] / MiB:.1f} MiB",
                     "reference": "flat", "ratio": f"{slope:+.4f}", "target": f"≤ {TARGET_RSS_SLOPE:g}",
                     "result": verdict(slope <= TARGET_RSS_SLOPE)})
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size-mb", type=int, default=320, help="total size of the catalogue's files in MB [320]")
    p.add_argument("--packages", type=int, default=40, help="lesson packages [40]")
    p.add_argument("--periods", type=int, default=2, help="课时 per package [2]")
    p.add_argument("--rss-small-mb", type=int, default=16, help="video of the small one-课时 catalogue, MB [16]")
    p.add_argument("--rss-mb", type=int, default=160, help="video of the big one-课时 catalogue, MB [160]")
    p.add_argument("--max-seconds", type=float, default=900, help="stop the whole run after this long [900]")
    p.add_argument("--profile", action="store_true", help="profile one local and one download build in any case "
                   "(otherwise only a build slower than its target is profiled)")
    p.add_argument("--md", type=Path, default=Path("/tmp/smartedu-bench.md"),
                   help="write the table as Markdown here [/tmp/smartedu-bench.md]")
    serve_bench.add_common_options(p, "work dir; a temp folder in it holds the catalogues and builds")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Write the catalogues, run the measures and print the table."""
    args = parse_args(argv)
    command = serve_bench.command_line(__file__, argv)
    tools, missing = serve_bench.find_tools(("nginx", "curl", "bash", "cp", "find", "sha256sum", "wc"))
    if not args.classbox_cmd and importlib.util.find_spec("classbox") is None:
        missing.append("classbox (pip install -e . in the repository)")
    if missing:
        print(f"missing: {', '.join(missing)}\n  install the tools with: apt-get install nginx curl coreutils "
              "findutils", file=sys.stderr)
        return 2
    lessons = args.packages * args.periods
    extras = lessons * (len(PDFS) * PDF_BYTES + 2 * PAGE_BYTES + THUMB_BYTES)
    video = (args.size_mb * MB - extras) // lessons if lessons > 0 else 0
    if args.packages < 1 or args.periods < 1 or video < 64 * KiB:
        print(f"--size-mb {args.size_mb} leaves no room for {lessons} videos beside their documents "
              f"({extras / MB:.0f} MB)", file=sys.stderr)
        return 2
    if not 1 <= args.rss_small_mb < args.rss_mb:
        print("--rss-small-mb must be ≥ 1 and below --rss-mb", file=sys.stderr)
        return 2
    cmd = serve_bench.classbox_command(args.classbox_cmd)
    work: Path = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    need = 3 * args.size_mb * MB + 3 * args.rss_mb * MB
    free = shutil.disk_usage(work).free
    if free < need + 2 * 1000 * MB:
        print(f"{work} has {free / 1e9:.1f} GB free; the run needs about {need / 1e9:.1f} GB and a margin",
              file=sys.stderr)
        return 2
    children = Children()

    def on_term(signum: int, frame: object) -> None:
        """Treat SIGTERM like Ctrl-C, so that the finally below runs."""
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    budget = Budget(args.max_seconds)
    t_start = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="smartedu-bench-", dir=work))
    results: dict[str, Any] = {}
    profiles: list[str] = []
    try:
        keydir = tmp / "keys"
        run_ok(children, [*cmd, "keygen", "--out", str(keydir)], budget.timeout(60), "keygen", bench_env())
        key = keydir / "publisher.key"
        port = start_nginx(children, tools["nginx"], tools["curl"], tmp)  # the catalogues' URLs name it
        base = f"http://127.0.0.1:{port}"
        log(f"writing a catalogue of {args.packages} packages × {args.periods} 课时, {args.size_mb} MB "
            f"(videos of {video / MB:.2f} MB) in {tmp}")
        t0 = time.monotonic()
        cat = make_catalogue(tmp / "main", "main", args.packages, args.periods, video, base)
        rss_sets = {"small": make_catalogue(tmp / "rss-small", "rss-small", 1, 1, args.rss_small_mb * MB, base),
                    "big": make_catalogue(tmp / "rss-big", "rss-big", 1, 1, args.rss_mb * MB, base)}
        warm(cat.folder)
        log(f"    {len(cat.files)} files, {cat.total / MB:.0f} MB, in {time.monotonic() - t0:.1f} s")

        log(f"1-2/4 local build vs cp -r + sha256sum, and the rerun vs a stat walk, {RUNS} runs each")
        results["local"] = measure_local(children, cmd, cat, key, tmp, budget)

        log(f"3/4 download build from nginx vs curl + sha256sum, {RUNS} runs each")
        results["download"] = measure_download(children, cmd, tools["curl"], cat, key, port, tmp, budget)

        log(f"4/4 peak RSS: one 课时 with a {args.rss_small_mb} MB and a {args.rss_mb} MB video, local and "
            f"download, {RUNS} runs each")
        results["rss"] = measure_rss(children, cmd, rss_sets, key, tmp, budget)

        slow_local = results["local"]["ratio"] > TARGET_LOCAL
        slow_dl = results["download"]["ratio"] > TARGET_DOWNLOAD
        for download, slow in ((False, slow_local), (True, slow_dl)):
            if slow or args.profile:
                log(f"profiling one {'download' if download else 'local'} build")
                profiles += profile(children, cmd, cat, key, tmp, download, budget)
    except KeyboardInterrupt:
        log("interrupted; stopping the children")
        return 130
    finally:
        children.stop_all()
        if (tmp / "error.log").exists():
            shutil.copyfile(tmp / "error.log", work / "smartedu-nginx-error.log")
        shutil.rmtree(tmp, ignore_errors=True)

    rows = build_rows(results, cat)
    meta = {
        "command": command,
        "packages": args.packages,
        "periods": args.periods,
        "files": len(cat.files),
        "size_bytes": cat.total,
        "video_bytes": video,
        "runs": RUNS,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "bench_seconds": round(time.monotonic() - t_start, 1),
    }
    intro = (f"Loopback, a synthetic catalogue in the platform's format: {args.packages} lesson packages × "
             f"{args.periods} 课时, each with a {video / MB:.1f} MB MP4, 4 PDFs of {PDF_BYTES // 1000} KB, 2 page "
             f"images of {PAGE_BYTES // 1000} KB and a thumbnail: {len(cat.files)} files, {cat.total / MB:.0f} MB; "
             f"{os.cpu_count()} CPUs, median of {RUNS} runs, {meta['bench_seconds']:.0f} s in all. Everything is "
             "read from the page cache; classbox fsyncs each blob and its bookkeeping, cp and curl do not. "
             "Download reference: one curl process with a -K list of every URL (sequential, keep-alive, the "
             "same Authorization header), then sha256sum of every file; classbox also checks each file's md5.")
    table = serve_bench.markdown(rows, reference="reference")
    print()
    print(intro)
    print()
    print(table)
    print()
    print(f"Command: `bench/run.sh smartedu{(' ' + shlex.join(sys.argv[1:] if argv is None else argv)).rstrip()}` "
          f"(runs `{command}`)")
    if profiles:
        print()
        print("\n".join(profiles))
    md = [f"## smartedu build benchmark ({meta['date']})", "", intro, "", table, "",
          f"Reproduce: `bench/run.sh smartedu{(' ' + shlex.join(sys.argv[1:] if argv is None else argv)).rstrip()}`"]
    if profiles:
        md += ["", "```", *profiles, "```"]
    args.md.parent.mkdir(parents=True, exist_ok=True)
    args.md.write_text("\n".join(md) + "\n")
    print(f"Markdown written to {args.md}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "results": results, "rows": rows, "profiles": profiles},
                                        indent=2) + "\n")
        print(f"JSON written to {args.json}")
    return 0 if all(r["result"] in ("PASS", "—") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
