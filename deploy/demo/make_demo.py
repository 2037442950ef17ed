#!/usr/bin/env python3
"""Generate the source folder of the classbox demo channel.

Usage: python deploy/demo/make_demo.py [OUT_DIR]

OUT_DIR defaults to deploy/demo/src next to this script; it is wiped and
recreated.  Needs Python 3.11, Pillow, the ffmpeg/ffprobe binaries (Debian
package ``ffmpeg``) and the WenQuanYi Zen Hei font (``fonts-wqy-zenhei``).
"""
from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

try:
    from PIL import Image, ImageDraw, ImageFont
except ImportError:  # pragma: no cover - depends on the machine
    sys.exit("make_demo: Pillow is required (pip install Pillow or apt-get install python3-pil)")

FONT_PATH = Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc")
DEFAULT_OUT = Path(__file__).resolve().parent / "src"
MAX_TOTAL_BYTES = 2_500_000

VIDEO_SIZE = (640, 360)
VIDEO_FPS = 24
VIDEO_SECONDS = 9.0
TRACK_X0, TRACK_X1, TRACK_Y = 40, 600, 318  # timeline along which the marker moves
MARKER = 20  # size of the moving square, px
PAGE_SIZE = (900, 1273)  # A4-ish portrait, px
JPEG_QUALITY = 70
A4_WIDTH_PT = 595.28
# A wrapping unit: a blank "（　）", an ASCII run such as "35 + 20 = ___" or one character,
# with opening punctuation glued to its front and closing punctuation to its back.
WRAP_TOKEN = re.compile(r"(?:（[　 ]*）|[“‘《（「]*(?:[A-Za-z0-9_.+=<> -]+|.))[，。、；：？！）》」”’…]*")

INK = (34, 34, 34)
GREY = (120, 120, 120)
WHITE = (255, 255, 255)

Color = tuple[int, int, int]


@dataclass(frozen=True)
class PausePoint:
    """A moment in the video where the teacher pauses for a class activity."""

    at: float
    prompt: str


@dataclass(frozen=True)
class Page:
    """One printed page: a heading and numbered questions continuing from ``start``."""

    heading: str
    questions: tuple[str, ...]
    start: int = 1


@dataclass(frozen=True)
class Lesson:
    """Everything needed to generate one demo lesson folder."""

    folder: str
    id: str
    title: str
    grade: str
    subject: str
    edition: str
    volume: str
    unit: str
    lesson: str
    period: str
    colour: Color
    pauses: tuple[PausePoint, ...]
    goal: str
    task_pages: tuple[Page, ...]
    exercise_pages: tuple[Page, ...]


CHANNEL = {
    "id": "demo",
    "title": "示范课程",
    "description": "演示用的示范频道：一年级语文、二年级数学各两节课，"
    "每节课包含教学视频、学习任务单、课堂练习和封面。",
}

LESSONS: tuple[Lesson, ...] = (
    Lesson(
        folder="g1-chinese-1",
        id="demo-g1-chinese-1",
        title="识字1 天地人",
        grade="一年级",
        subject="语文",
        edition="统编版",
        volume="上册",
        unit="第一单元 识字",
        lesson="天地人",
        period="第一课时",
        colour=(46, 125, 50),
        pauses=(
            PausePoint(3.0, "请同学们跟着老师读一读：天、地、人、你、我、他。"),
            PausePoint(6.5, "想一想：抬头能看到什么？低头能看到什么？同桌说一说。"),
        ),
        goal="认识“天、地、人、你、我、他”6个生字，能正确、响亮地朗读。",
        task_pages=(
            Page("课前预习", (
                "读一读：天　地　人　你　我　他，每个字读三遍，读给家长听。",
                "给下面的字注音：天（　　）　地（　　）　人（　　）",
                "想一想：抬头看到的是______，低头看到的是______。",
            )),
            Page("课堂活动", (
                "同桌说一说：用“你”“我”“他”各说一句话。",
                "画一画：画出天、地和人，并在画的下面写上这三个字。",
            ), start=4),
        ),
        exercise_pages=(
            Page("课堂练习", (
                "数一数：“人”字有______笔，“天”字有______笔。",
                "填一填：（　　）在上，（　　）在下，（　　）在中间。",
                "圈一圈：圈出表示人的字：天　你　地　我　他　人",
                "读一读：天地人，你我他。读给同桌听，再请同桌读给你听。",
            )),
        ),
    ),
    Lesson(
        folder="g1-chinese-2",
        id="demo-g1-chinese-2",
        title="识字2 金木水火土",
        grade="一年级",
        subject="语文",
        edition="统编版",
        volume="上册",
        unit="第一单元 识字",
        lesson="金木水火土",
        period="第一课时",
        colour=(198, 40, 40),
        pauses=(
            PausePoint(3.0, "请同学们跟着老师读一读：一二三四五，金木水火土。"),
            PausePoint(6.5, "同桌说一说：生活中你在哪里见过“水”和“火”？"),
        ),
        goal="认识“金、木、水、火、土”等生字，会背诵儿歌，知道数字的顺序。",
        task_pages=(
            Page("课前预习", (
                "读一读：一二三四五，金木水火土。天地分上下，日月照今古。",
                "数一数：儿歌里有______个数字，它们是____________。",
                "找一找：在儿歌里圈出“金、木、水、火、土”五个字。",
            )),
            Page("课堂活动", (
                "说一说：教室里哪些东西是用“木”做的？",
                "写一写：照样子写一写“一、二、三”，注意笔顺。",
            ), start=4),
        ),
        exercise_pages=(
            Page("课堂练习", (
                "照样子填一填：一 — 二 — （　　） — 四 — （　　）",
                "填一填：天地分（　　）（　　），日月照（　　）（　　）。",
                "判断：“火”字一共有四笔。（　　）",
                "想一想：“日”和“月”，哪一个在白天出现？",
            )),
        ),
    ),
    Lesson(
        folder="g2-math-1",
        id="demo-g2-math-1",
        title="长度单位：认识厘米和米",
        grade="二年级",
        subject="数学",
        edition="人教版",
        volume="上册",
        unit="第一单元 长度单位",
        lesson="认识厘米和米",
        period="第一课时",
        colour=(21, 101, 192),
        pauses=(
            PausePoint(3.0, "动手量一量：用直尺量一量你的铅笔有多长。"),
            PausePoint(6.5, "估一估：你的课桌大约有多长？先估一估，再和同桌量一量。"),
        ),
        goal="认识长度单位厘米和米，知道1米=100厘米，会用直尺量物体的长度。",
        task_pages=(
            Page("课前预习", (
                "看一看：直尺上的“0”在哪里？1厘米有多长？用手指比一比。",
                "动手量一量：我的铅笔长______厘米，橡皮长______厘米。",
                "估一估：我的课桌大约长______（填“厘米”或“米”）。",
            )),
            Page("课堂活动", (
                "填一填：1米 = ______厘米。",
                "同桌合作：用米尺量一量黑板的长度，记录下来：大约______米。",
            ), start=4),
        ),
        exercise_pages=(
            Page("课堂练习", (
                "填上合适的单位：铅笔长18（　　），教室的门高2（　　）。",
                "填一填：1米 = （　　）厘米，100厘米 = （　　）米。",
                "比一比：在○里填上“>”“<”或“=”：1米○90厘米，50厘米○1米。",
                "小红的绳子长60厘米，小明的绳子比她长10厘米。小明的绳子长多少厘米？",
            )),
        ),
    ),
    Lesson(
        folder="g2-math-2",
        id="demo-g2-math-2",
        title="100以内的加法",
        grade="二年级",
        subject="数学",
        edition="人教版",
        volume="上册",
        unit="第二单元 100以内的加法和减法（二）",
        lesson="两位数加两位数（不进位加）",
        period="第一课时",
        colour=(239, 108, 0),
        pauses=(
            PausePoint(3.0, "想一想：35 + 2 和 35 + 20，计算方法有什么不同？同桌说一说。"),
            PausePoint(6.5, "请同学们列竖式算一算：34 + 25 = ？算完和同桌互相检查。"),
        ),
        goal="会用竖式计算两位数加两位数（不进位），知道相同数位要对齐。",
        task_pages=(
            Page("课前预习", (
                "算一算：35 + 2 = ______　　35 + 20 = ______",
                "想一想：列竖式时，相同数位要______，从______位加起。",
                "列竖式计算：34 + 25 = ______",
            )),
            Page("课堂活动", (
                "小组说一说：你是怎样算 42 + 36 的？",
                "解决问题：二（1）班有男生23人，女生24人，一共有多少人？",
            ), start=4),
        ),
        exercise_pages=(
            Page("课堂练习", (
                "口算：20 + 30 = ______　　45 + 3 = ______　　60 + 25 = ______",
                "列竖式计算：43 + 25　　　52 + 36　　　71 + 18",
                "填一填：个位上的数和______位上的数相加，十位上的数和______位上的数相加。",
                "图书角有故事书32本，科普书45本，一共有多少本？",
            )),
        ),
    ),
)


def fail(message: str) -> None:
    """Stop the script with an error message on stderr."""
    sys.exit(f"make_demo: {message}")


def check_tools() -> None:
    """Make sure the font and the ffmpeg binaries are installed."""
    if not FONT_PATH.is_file():
        fail(f"font {FONT_PATH} not found; install the Debian package fonts-wqy-zenhei "
             "(apt-get install fonts-wqy-zenhei)")
    for tool in ("ffmpeg", "ffprobe"):
        if shutil.which(tool) is None:
            fail(f"{tool} not found; install the Debian package ffmpeg (apt-get install ffmpeg)")


@functools.cache
def font(size: int) -> ImageFont.FreeTypeFont:
    """Load the Chinese font at ``size`` pixels."""
    return ImageFont.truetype(str(FONT_PATH), size)


def text_width(draw: ImageDraw.ImageDraw, text: str, face: ImageFont.FreeTypeFont) -> int:
    """Width in pixels of ``text`` drawn with ``face``."""
    left, _, right, _ = draw.textbbox((0, 0), text, font=face)
    return int(right - left)


def fit_font(draw: ImageDraw.ImageDraw, text: str, size: int, max_width: int) -> ImageFont.FreeTypeFont:
    """Largest font not above ``size`` that draws ``text`` within ``max_width``."""
    while size > 12 and text_width(draw, text, font(size)) > max_width:
        size -= 2
    return font(size)


def wrap(draw: ImageDraw.ImageDraw, text: str, face: ImageFont.FreeTypeFont, max_width: int) -> list[str]:
    """Break Chinese text into lines within ``max_width`` without splitting sums, blanks or punctuation."""
    lines: list[str] = []
    line = ""
    for token in WRAP_TOKEN.findall(text):
        if line and text_width(draw, line + token, face) > max_width:
            lines.append(line.rstrip())
            line = token.lstrip()
        else:
            line += token
    if line:
        lines.append(line)
    return lines


def lighten(colour: Color, amount: float) -> Color:
    """Mix ``colour`` with white by ``amount`` (0 = unchanged, 1 = white)."""
    r, g, b = (round(c + (255 - c) * amount) for c in colour)
    return (r, g, b)


def path_line(lesson: Lesson) -> str:
    """Short human-readable place of the lesson in the curriculum."""
    return f"{lesson.grade}{lesson.subject} · {lesson.edition}{lesson.volume} · {lesson.unit}"


def title_card(lesson: Lesson, timeline: bool) -> Image.Image:
    """640x360 card with the lesson title; with ``timeline``, a track marking the pause points."""
    width, height = VIDEO_SIZE
    image = Image.new("RGB", VIDEO_SIZE, lesson.colour)
    draw = ImageDraw.Draw(image)
    small = font(22)
    draw.text((32, 26), "示范课程", font=small, fill=lighten(lesson.colour, 0.7))
    title_face = fit_font(draw, lesson.title, 64, width - 64)
    draw.text((width // 2, 140), lesson.title, font=title_face, fill=WHITE, anchor="mm")
    sub_face = fit_font(draw, path_line(lesson), 24, width - 64)
    draw.text((width // 2, 214), path_line(lesson), font=sub_face, fill=lighten(lesson.colour, 0.8), anchor="mm")
    detail = f"{lesson.lesson} · {lesson.period}"
    draw.text((width // 2, 254), detail, font=fit_font(draw, detail, 24, width - 64),
              fill=lighten(lesson.colour, 0.8), anchor="mm")
    if timeline:
        x0, x1, y = TRACK_X0, TRACK_X1, TRACK_Y
        draw.rounded_rectangle((x0, y - 4, x1, y + 4), radius=4, fill=lighten(lesson.colour, 0.45))
        for pause in lesson.pauses:
            x = x0 + (x1 - x0) * pause.at / VIDEO_SECONDS
            draw.polygon(((x - 8, y - 20), (x + 8, y - 20), (x, y - 8)), fill=WHITE)
        draw.text((x0, y + 14), "▼ 暂停活动", font=font(16), fill=lighten(lesson.colour, 0.7))
    return image


def run(cmd: list[str]) -> str:
    """Run a command, returning stdout; stop the script with its stderr on failure."""
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        fail(f"command failed: {' '.join(cmd)}\n{result.stderr.strip()}")
    return result.stdout


def make_video(lesson: Lesson, background: Path, out: Path) -> None:
    """Encode the lesson video: title card, moving marker, seconds counter, quiet tone."""
    travel = TRACK_X1 - TRACK_X0
    marker_colour = "0x{:02X}{:02X}{:02X}".format(*lighten(lesson.colour, 0.85))
    graph = (
        f"[0:v][1:v]overlay=x='{TRACK_X0 - MARKER // 2}+{travel}*t/{VIDEO_SECONDS}'"
        f":y={TRACK_Y - MARKER // 2}[moving];"
        f"[moving]drawtext=fontfile={FONT_PATH}:text='已播放 %{{eif\\:t\\:d}} 秒'"
        ":fontsize=20:fontcolor=white:x=w-tw-24:y=24:box=1:boxcolor=black@0.35:boxborderw=6,"
        "format=yuv420p[v];"
        "[2:a]volume=0.5[a]"
    )
    run([
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
        "-loop", "1", "-framerate", str(VIDEO_FPS), "-i", str(background),
        "-f", "lavfi", "-i", f"color=c={marker_colour}:s={MARKER}x{MARKER}:r={VIDEO_FPS}",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
        "-filter_complex", graph, "-map", "[v]", "-map", "[a]",
        "-t", str(VIDEO_SECONDS),
        "-c:v", "libx264", "-profile:v", "main", "-preset", "medium", "-crf", "32",
        "-maxrate", "160k", "-bufsize", "320k", "-g", str(VIDEO_FPS * 2), "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "32k", "-ac", "1",
        "-movflags", "+faststart", str(out),
    ])


def verify_video(path: Path) -> float:
    """Check with ffprobe that ``path`` is H.264/yuv420p + AAC of about the right length; return its duration."""
    info = json.loads(run([
        "ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path),
    ]))
    streams = {s["codec_type"]: s for s in info["streams"]}
    video, audio = streams.get("video"), streams.get("audio")
    assert video and video["codec_name"] == "h264", f"{path}: no H.264 video stream"
    assert video["pix_fmt"] == "yuv420p", f"{path}: pixel format {video['pix_fmt']}"
    assert video["profile"] in ("Main", "Constrained Baseline", "Baseline"), f"{path}: profile {video['profile']}"
    assert (video["width"], video["height"]) == VIDEO_SIZE, f"{path}: size {video['width']}x{video['height']}"
    assert audio and audio["codec_name"] == "aac", f"{path}: no AAC audio stream"
    duration = float(info["format"]["duration"])
    assert abs(duration - VIDEO_SECONDS) < 0.3, f"{path}: duration {duration}"
    return duration


def render_page(lesson: Lesson, doc_title: str, page: Page, number: int, total: int) -> Image.Image:
    """Render one portrait worksheet page with heading, name/class line and numbered questions."""
    width, height = PAGE_SIZE
    margin = 72
    image = Image.new("RGB", PAGE_SIZE, WHITE)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width, 14), fill=lesson.colour)
    title = f"《{lesson.lesson}》{doc_title}"
    draw.text((width // 2, 92), title, font=fit_font(draw, title, 46, width - 2 * margin), fill=INK, anchor="mm")
    draw.text((width // 2, 146), path_line(lesson) + f" · {lesson.period}",
              font=fit_font(draw, path_line(lesson) + f" · {lesson.period}", 24, width - 2 * margin),
              fill=GREY, anchor="mm")
    draw.text((margin, 196), "姓名：__________　　班级：__________　　日期：________", font=font(26), fill=INK)
    draw.line((margin, 246, width - margin, 246), fill=lesson.colour, width=3)
    y = 272
    body = font(28)
    if number == 1 and page.start == 1 and doc_title == "学习任务单":
        for line in wrap(draw, "学习目标：" + lesson.goal, font(26), width - 2 * margin):
            draw.text((margin, y), line, font=font(26), fill=GREY)
            y += 38
        y += 18
    draw.text((margin, y), page.heading, font=font(32), fill=lesson.colour)
    y += 62
    for index, question in enumerate(page.questions, start=page.start):
        label = f"{index}. "
        indent = text_width(draw, label, body)
        draw.text((margin, y), label, font=body, fill=INK)
        for line in wrap(draw, question, body, width - 2 * margin - indent):
            draw.text((margin + indent, y), line, font=body, fill=INK)
            y += 42
        y += 12
        for _ in range(2):  # ruled answer lines
            y += 44
            draw.line((margin + indent, y, width - margin, y), fill=(200, 200, 200), width=2)
        y += 40
    footer = f"示范课程 · {doc_title} · 第 {number} 页 / 共 {total} 页"
    draw.text((width // 2, height - 48), footer, font=font(20), fill=GREY, anchor="mm")
    assert y < height - 80, f"{lesson.id}: page {number} of {doc_title} overflows"
    return image


def save_jpeg(image: Image.Image, path: Path) -> None:
    """Save ``image`` as a baseline RGB JPEG at the demo quality."""
    image.convert("RGB").save(path, "JPEG", quality=JPEG_QUALITY, optimize=True)


def pdf_text(value: str) -> bytes:
    """Encode a PDF text string as UTF-16BE hex with byte-order mark."""
    return b"<FEFF" + value.encode("utf-16-be").hex().upper().encode() + b">"


def write_pdf(path: Path, jpegs: list[Path], title: str) -> None:
    """Write a minimal PDF with one full-page DCT-encoded image per JPEG."""
    objects: list[bytes] = [b"", b""]  # 1: catalog, 2: pages, filled in below
    objects.append(b"<< /Title " + pdf_text(title) + b" /Producer (classbox make_demo.py) >>")
    kids: list[str] = []
    for jpeg in jpegs:
        data = jpeg.read_bytes()
        with Image.open(jpeg) as img:
            assert img.mode == "RGB" and img.format == "JPEG", f"{jpeg}: not an RGB JPEG"
            px_w, px_h = img.size
        scale = A4_WIDTH_PT / min(px_w, px_h)
        pt_w, pt_h = round(px_w * scale, 2), round(px_h * scale, 2)
        page_no = len(objects) + 1
        contents_no, image_no = page_no + 1, page_no + 2
        kids.append(f"{page_no} 0 R")
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {pt_w} {pt_h}] "
            f"/Resources << /XObject << /Im0 {image_no} 0 R >> /ProcSet [/PDF /ImageC] >> "
            f"/Contents {contents_no} 0 R >>".encode()
        )
        drawing = f"q {pt_w} 0 0 {pt_h} 0 0 cm /Im0 Do Q".encode()
        objects.append(b"<< /Length %d >>\nstream\n" % len(drawing) + drawing + b"\nendstream")
        objects.append(
            f"<< /Type /XObject /Subtype /Image /Width {px_w} /Height {px_h} /ColorSpace /DeviceRGB "
            f"/BitsPerComponent 8 /Filter /DCTDecode /Length {len(data)} >>\nstream\n".encode()
            + data + b"\nendstream"
        )
    objects[0] = b"<< /Type /Catalog /Pages 2 0 R >>"
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>".encode()

    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets: list[int] = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref_at = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 3 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref_at)
    path.write_bytes(bytes(out))


def verify_pdf(path: Path, pages: int) -> None:
    """Check the PDF's page count with pdfinfo if installed, and always re-read its xref table."""
    data = path.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF"), f"{path}: bad header/trailer"
    tail = re.search(rb"startxref\s+(\d+)\s+%%EOF\s*$", data)
    assert tail, f"{path}: no startxref"
    xref_at = int(tail.group(1))
    assert data[xref_at:xref_at + 4] == b"xref", f"{path}: startxref does not point at xref"
    header = re.match(rb"xref\n0 (\d+)\n", data[xref_at:])
    assert header, f"{path}: malformed xref header"
    count = int(header.group(1))
    table = data[xref_at + header.end():]
    for number in range(1, count):
        entry = table[number * 20:(number + 1) * 20]
        offset = int(entry[:10])
        assert entry[17:18] == b"n", f"{path}: object {number} not in use"
        assert data.startswith(b"%d 0 obj" % number, offset), f"{path}: xref offset of object {number} is wrong"
    found = len(re.findall(rb"/Type /Page\b(?!s)", data))
    assert found == pages, f"{path}: {found} pages, expected {pages}"
    if shutil.which("pdfinfo"):
        info = run(["pdfinfo", str(path)])
        match = re.search(r"^Pages:\s+(\d+)", info, re.MULTILINE)
        assert match and int(match.group(1)) == pages, f"{path}: pdfinfo reports {info!r}"


def make_document(lesson: Lesson, folder: Path, stem: str, doc_title: str, pages: tuple[Page, ...]) -> list[str]:
    """Render the page JPEGs and matching PDF of one document; return the JPEG file names."""
    names: list[str] = []
    for number, page in enumerate(pages, start=1):
        name = f"{stem}-{number}.jpg"
        save_jpeg(render_page(lesson, doc_title, page, number, len(pages)), folder / name)
        names.append(name)
    pdf = folder / f"{stem}.pdf"
    write_pdf(pdf, [folder / name for name in names], f"《{lesson.lesson}》{doc_title}")
    verify_pdf(pdf, len(names))
    return names


def make_lesson(lesson: Lesson, out_dir: Path, scratch: Path) -> None:
    """Generate the folder, files and lesson.json of one lesson."""
    folder = out_dir / lesson.folder
    folder.mkdir()
    for pause in lesson.pauses:
        assert 0 < pause.at < VIDEO_SECONDS - 1, f"{lesson.id}: pause at {pause.at}s is outside the video"

    background = scratch / f"{lesson.folder}.png"
    title_card(lesson, timeline=True).save(background)
    make_video(lesson, background, folder / "video.mp4")
    verify_video(folder / "video.mp4")

    task_pages = make_document(lesson, folder, "task", "学习任务单", lesson.task_pages)
    exercise_pages = make_document(lesson, folder, "exercise", "课堂练习", lesson.exercise_pages)
    save_jpeg(title_card(lesson, timeline=False), folder / "cover.jpg")

    manifest = {
        "id": lesson.id,
        "title": lesson.title,
        "section": "课程教学",
        "path": {
            "stage": "小学",
            "grade": lesson.grade,
            "subject": lesson.subject,
            "edition": lesson.edition,
            "volume": lesson.volume,
            "unit": lesson.unit,
            "lesson": lesson.lesson,
            "period": lesson.period,
        },
        "assets": [
            {"role": "video", "file": "video.mp4",
             "pause_points": [{"at": p.at, "prompt": p.prompt} for p in lesson.pauses]},
            {"role": "task_sheet", "file": "task.pdf", "pages": task_pages},
            {"role": "exercise", "file": "exercise.pdf", "pages": exercise_pages},
            {"role": "cover", "file": "cover.jpg"},
        ],
    }
    write_json(folder / "lesson.json", manifest)


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` as indented UTF-8 JSON with real Chinese characters."""
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str]) -> int:
    """Wipe and regenerate the demo channel source folder."""
    if len(argv) > 2 or (len(argv) == 2 and argv[1] in ("-h", "--help")):
        print(__doc__.strip())
        return 2 if len(argv) > 2 else 0
    out_dir = Path(argv[1]) if len(argv) == 2 else DEFAULT_OUT
    check_tools()
    if out_dir.exists():
        if any(out_dir.iterdir()) and not (out_dir / "channel.json").is_file():
            fail(f"{out_dir} is not empty and holds no channel.json; refusing to wipe it")
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    write_json(out_dir / "channel.json", CHANNEL)
    with tempfile.TemporaryDirectory(prefix="classbox-demo-") as scratch:
        for lesson in LESSONS:
            make_lesson(lesson, out_dir, Path(scratch))

    files = [p for p in out_dir.rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    print(f"demo channel written to {out_dir}: {len(LESSONS)} lessons, {len(files)} files, {total:,} bytes")
    if total > MAX_TOTAL_BYTES:
        fail(f"demo is {total:,} bytes, over the {MAX_TOTAL_BYTES:,} byte budget")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
