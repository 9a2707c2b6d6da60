"""The four Vietnamese course notes nanonorm's studies come from, cited by title.

The notes are not part of the repository; the report names each by its title (the notes'
own, with an English gloss) and quotes the figures it compares, so a reader without the notes
knows what was claimed. Notes 2-4 reached us with a damaged text encoding (some accented
letters lost); their titles below are restored, the numbers they quote were intact.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Note:
    number: int
    title: str          # the note's own title
    english: str        # what the title says
    lecture: str | None  # the lecture the note says it was written from


NOTES = {n.number: n for n in (
    Note(1, "Phân Tích Layer Normalization Trong Học Sâu: Cơ Sở Lý Thuyết, Ổn Định Số Học Và "
            "Ứng Dụng Thực Tiễn",
         "Layer Normalization in deep learning: theory, numerical stability and practice",
         None),
    Note(2, "Các Vấn Đề Tỷ Lệ Số Học Trong Mô Hình Học Sâu: Phân Tích Vai Trò Của Scaling và "
            "Normalization Trong Cơ Chế Attention",
         "Numerical scaling in deep learning models: the role of scaling and normalization in "
         "attention", "CodeChallenge: Numerical Scaling Issues in DL Models"),
    Note(3, "Phân Tích Số Lượng Tham Số Trong Mô Hình GPT-2: Phương Pháp Định Lượng và Ý "
            "Nghĩa Kiến Trúc",
         "GPT-2's parameter count: a quantitative method and what it says about the "
         "architecture", "CodeChallenge: How Many Parameters (Part 1)"),
    Note(4, "Đánh Giá Hiệu Năng GPT-2 Trên CPU và GPU: Thực Nghiệm Thời Gian Khởi Tạo, Suy "
            "Luận và Huấn Luyện",
         "GPT-2 on CPU and GPU: timing construction, inference and training",
         "CodeChallenge: Time Model 5 on CPU and GPU"),
)}


def cite(number: int, where: str = "") -> str:
    """'note 1, “title”, §5.2': the citation every section gives for its source."""
    note = NOTES[number]
    return f"note {number}, “{note.title}”" + (f", {where}" if where else "")


def quoted(number: int, items: dict) -> tuple:
    """A list block of the note's own words and figures, each labelled as the note's."""
    return ("list", [f"note {number} says — {k}: {v}" for k, v in items.items()])


def sources_section(cited_by: dict[int, list[str]]) -> list[tuple]:
    """The report's list of sources: each note's title, gloss, lecture and the studies citing
    it (cited_by: note number -> study titles)."""
    rows = [[f"note {n.number}", f"“{n.title}” ({n.english})", n.lecture or "–",
             ", ".join(cited_by.get(n.number, [])) or "–"] for n in NOTES.values()]
    return [("h", 2, "Sources"),
            ("p", "The studies rerun the experiments of four Vietnamese course notes that "
                  "nanonorm was started from. The notes are not distributed with nanonorm: "
                  "each section below cites its note by title and section and quotes the "
                  "note's own figures, labelled as the note's, beside what this run measured. "
                  "(Notes 2–4 reached us with a damaged text encoding; their titles are shown "
                  "restored.)"),
            ("table", ["", "title", "written from", "studies"], rows)]
