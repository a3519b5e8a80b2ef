"""Tests that can fail: plant known bugs (mutants) in a copy of the Python code and check that the
tests written against them fail (RELIABILITY.md, "Mutants").

    python scripts/check_mutants.py [--only NAME ...] [--list]

Each mutant is a plausible bug: two reviews planted 144 by hand in session 48, and 56 passed every
test (about 9 harmlessly). Tests were written for 35 of them; the table holds those 35, one bug
that tests caught before, and three session 48 fixed. Session 49 wrote tests for 12 more of the 56
(12 mutants), and a third review planted 69 in the detector, resume, recognizer, evaluation,
export and model code: 32 passed the tests it ran, 27 now have tests (27 mutants; 3 of them were
caught by tests the review had not run). A fourth planted 84 in the video tracker, the CLI's
checks, augmentation and training's mixing: 41 passed, 36 now have tests (36 mutants). With one
mutant for each of six of that session's fixes the table held 120; session 50 added 8 (label placement, annotated copies, facenorm's shrink): 128.

A copy is made under a temporary folder (``pyfer/``, ``training/``, ``tests/``, ``scripts/``,
with the built modules copied in and the rest linked) for each of ``--jobs`` workers (2 by
default), and each mutant's tests run in one copy, one mutant per copy at a time, with the
editable install's import hook removed so that the copy is what is imported. First every
selection runs unmutated and must pass; then each mutant must make its selection fail. Exit
status 1 if a selection fails unmutated or a mutant survives. About 5 minutes on 2 cores.
A test that starts Python with an environment of its own (without ``PYTHONPATH``) runs the real
code, not the copy: choose tests that call the code in process or pass the environment on.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import importlib.util
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str  # relative to the repository
    old: str  # must occur exactly once in the file
    new: str
    tests: tuple[str, ...]  # pytest arguments: the tests that must catch it


MUTANTS = (
    Mutant("to_gray reads RGB", "pyfer/preprocess.py", "cv2.COLOR_BGR2GRAY)", "cv2.COLOR_RGB2GRAY)",
           ("tests/test_preprocess.py",)),
    Mutant("normalize forgets std", "pyfer/preprocess.py", "x -= spec.mean / spec.std", "x -= spec.mean",
           ("tests/test_preprocess.py",)),
    Mutant("resize_face samples when it shrinks", "pyfer/preprocess.py",
           "interp = cv2.INTER_AREA if min(h, w) > size else cv2.INTER_LINEAR", "interp = cv2.INTER_LINEAR",
           ("tests/test_preprocess.py",)),
    Mutant("on_white blends onto black", "pyfer/preprocess.py", "+ 255.0 * (1.0 - alpha)", "+ 0.0 * (1.0 - alpha)",
           ("tests/test_recognizer.py", "-k", "transparent_image or alpha")),
    Mutant("box framing by the shorter side", "pyfer/facenorm.py", "side = framing.box_scale * max(w, h)",
           "side = framing.box_scale * min(w, h)", ("tests/test_facenorm.py",)),
    Mutant("box_shift y scaled by the width", "pyfer/facenorm.py", "framing.box_shift[1] * h",
           "framing.box_shift[1] * w", ("tests/test_facenorm.py",)),
    Mutant("pre-shrink only below 0.25", "pyfer/facenorm.py", "if scale < 0.5:", "if scale < 0.25:",
           ("tests/test_facenorm.py",)),
    Mutant("check_box: y against the width", "pyfer/detect.py", "if x >= iw or y >= ih or",
           "if x >= iw or y >= iw or", ("tests/test_detect.py", "-k", "check_and_clip")),
    Mutant("Haar fallback boxes not moved back", "pyfer/detect.py",
           "boxes = [(x - p, y - p, w, h) for x, y, w, h in self._detect(padded)]",
           "boxes = [(x, y, w, h) for x, y, w, h in self._detect(padded)]",
           ("tests/test_detect.py", "-k", "haar_fallback")),
    Mutant("nested rule drops an inner face that outscores its box", "pyfer/yunet.py",
           "part = inside & (score[:, None] < score[None]) & (score < NESTED_PART_SCORE)[:, None]",
           "part = inside & (score < NESTED_PART_SCORE)[:, None]", ("tests/test_detect.py", "-k", "drop_nested")),
    Mutant("a turned find wins without the margin", "pyfer/yunet.py",
           "rank = np.concatenate([rows[:, 14], turned[:, 14] - TURN_MARGIN])",
           "rank = np.concatenate([rows[:, 14], turned[:, 14]])", ("tests/test_detect.py", "-k", "turned_find")),
    Mutant("a second look keeps any overlap", "pyfer/yunet.py", "best, best_iou = None, 0.3",
           "best, best_iou = None, 0.0", ("tests/test_detect.py", "-k", "second_look")),
    Mutant("slivers pass as faces", "pyfer/yunet.py", "ok = (w >= 1) & (h >= 1) & (w <= 2.5 * h) & (h <= 2.5 * w)",
           "ok = (w >= 1) & (h >= 1)", ("tests/test_yunet_engine.py", "-k", "far_larger")),
    Mutant("min_face on the shorter side", "pyfer/recognizer.py",
           "if self.min_face is not None and max(box[2], box[3]) < self.min_face:",
           "if self.min_face is not None and min(box[2], box[3]) < self.min_face:",
           ("tests/test_recognizer.py", "-k", "order_of_a_custom")),
    Mutant("JPEG cut detection never reports a cut", "pyfer/image_size.py",
           "    return all(marker != 0xD9 for marker, _ in jpeg_markers(data))",
           "    return False",
           ("tests/test_frontend_robustness.py", "-k", "jpeg_ends_early or cut_short")),
    Mutant("--threads 0 left to the API's words", "pyfer/cli.py",
           "if args.threads is not None and args.threads < 1:", "if False:",
           ("tests/test_cli.py", "-k", "threads_below_one")),
    Mutant("CSV confidence to 2 decimals", "pyfer/cli.py", 'f"{f.confidence:.6f}"', 'f"{f.confidence:.2f}"',
           ("tests/test_cli.py", "-k", "csv_numbers")),
    Mutant("evaluate's surest face is the last", "pyfer/evaluate.py",
           "surest = max(faces, key=lambda f: f.detection_score or 0.0)", "surest = faces[-1]",
           ("tests/test_evaluate_cli.py", "-k", "detection_metrics")),
    Mutant("evaluate's accuracy_detected over every image", "pyfer/evaluate.py",
           "float(np.mean(truth[found] == predicted[found]))", "float(np.mean(truth == predicted))",
           ("tests/test_evaluate_cli.py", "-k", "detection_metrics")),
    Mutant("training's macro recall over absent classes", "training/evaluate.py",
           '"macro_recall": float(rec[present].mean()),', '"macro_recall": float(rec.mean()),',
           ("tests/test_research_tools.py", "-k", "compute_metrics_averages")),
    Mutant("training's TTA mirrors top to bottom", "training/predict.py", "model(x.flip(3))", "model(x.flip(2))",
           ("tests/test_research_tools.py", "-k", "tta_averages")),
    Mutant("a manifest's YuNet cache keyed by the names as given", "training/framing.py",
           "else [os.path.realpath(n) for n in base.names]", "else list(base.names)",
           ("tests/test_framing.py",)),
    Mutant("open_in_place keeps a longer file's tail", "pyfer/atomic.py", "            os.ftruncate(fd, 0)\n",
           "            pass\n", ("tests/test_atomic.py", "-k", "longer_file")),
    Mutant("atomic_write renames before the data is on disk", "pyfer/atomic.py",
           "                os.fsync(self.f.fileno())", "                pass", ("tests/test_atomic.py", "-k", "syncs")),
    Mutant("a fresh run keeps the old resume record", "pyfer/resume.py",
           "            sidecar_path(path).unlink(missing_ok=True)", "            pass",
           ("tests/test_cli.py", "-k", "old_resume_record")),
    Mutant("annotated video at a fixed 25 fps", "pyfer/video.py", "writer = open_writer(out, fps_in, (w, h))",
           "writer = open_writer(out, 25.0, (w, h))", ("tests/test_cli.py", "-k", "frame_rate")),
    Mutant("softmax without the maximum taken out", "pyfer/engine.py", "    z = z - z.max(axis=axis, keepdims=True)\n",
           "", ("tests/test_engine.py", "-k", "large_logits")),
    Mutant("WebP canvas width and height swapped", "pyfer/image_size.py",
           'return int.from_bytes(canvas[:3], "little") + 1, int.from_bytes(canvas[3:], "little") + 1',
           'return int.from_bytes(canvas[3:], "little") + 1, int.from_bytes(canvas[:3], "little") + 1',
           ("tests/test_image_size.py", "-k", "VP8X")),
    Mutant("TIFF: a later duplicate size tag wins", "pyfer/image_size.py",
           "if tag not in (256, 257) or tag in sizes or value_format is None:",
           "if tag not in (256, 257) or value_format is None:", ("tests/test_image_size.py", "-k", "duplicate")),
    Mutant("formats after WebP not read as WebP too", "pyfer/image_size.py",
           "return name, _larger(reader(data), webp)", "return name, reader(data)",
           ("tests/test_image_size.py", "-k", "also_webp")),
    Mutant("training augmentation never flips", "training/data.py",
           "flip = torch.where(rand(b) < 0.5, -1.0, 1.0) if spec.flip else torch.ones(b, device=dev)",
           "flip = torch.ones(b, device=dev)", ("tests/test_data.py", "-k", "flips")),
    Mutant("training augmentation erases every face", "training/data.py",
           "box &= (rand(b) < spec.erase_prob).view(-1, 1, 1)", "box &= (rand(b) < 1.0).view(-1, 1, 1)",
           ("tests/test_data.py", "-k", "erases")),
    Mutant("training augmentation shifts half as far", "training/data.py",
           "shift = (rand(b, 2) * 2 - 1) * spec.max_shift * 2", "shift = (rand(b, 2) * 2 - 1) * spec.max_shift",
           ("tests/test_data.py", "-k", "shifts")),
    Mutant("the plateau schedule minimises accuracy", "training/train.py",
           'ReduceLROnPlateau(opt, mode="max"', 'ReduceLROnPlateau(opt, mode="min"',
           ("tests/test_training.py", "-k", "plateau_schedule")),
    Mutant("a fp16 export written as fp32", "training/export.py", "dtype = torch.float16 if half else torch.float32",
           "dtype = torch.float32", ("tests/test_engine.py", "-k", "fp16_weights")),
    Mutant("a PFM of zero width passes", "pyfer/image_size.py",
           "return (numbers[0], numbers[1]) if min(numbers) > 0 else None",
           "return (numbers[0], numbers[1]) if min(numbers) >= 0 else None",
           ("tests/test_image_size.py", "-k", "zero_width")),
    Mutant("file_sha256 hashes the first MiB only", "pyfer/engine.py",
           'for chunk in iter(lambda: f.read(1 << 20), b""):\n            h.update(chunk)',
           "h.update(f.read(1 << 20))", ("tests/test_engine.py", "-k", "whole_file")),
    Mutant("the weights reader takes a header checksum field found twice", "pyfer/weights_file.py",
           "if found < 0 or at + 8 > end or header.find(_HEADER_CRC_FIELD, found + 1) >= 0:",
           "if found < 0 or at + 8 > end:", ("tests/test_weights_file.py", "-k", "once")),
    Mutant("training tools print a refusal without 'error:'", "training/cli.py",
           '            print(f"error: {exc.code}", file=sys.stderr)\n            raise SystemExit(2) from None\n',
           "            raise\n", ("tests/test_tool_write_errors.py", "-k", "refusing")),
    Mutant("a tie makes the later epoch best.pt", "training/train.py", "improved = score > best_score",
           "improved = score >= best_score", ("tests/test_run_folder.py", "-k", "tie_keeps")),
    Mutant("the checkpoint digest ignores dtypes", "training/checkpoint.py",
           'h.update(f"T{t.dtype}{tuple(obj.shape)}".encode())', 'h.update(f"T{tuple(obj.shape)}".encode())',
           ("tests/test_resume.py", "-k", "same_bytes")),
    Mutant("an unreadable image is not counted as failed", "pyfer/cli.py",
           "failed += 1\n                progress.update()\n                continue",
           "progress.update()\n                continue", ("tests/test_cli.py", "-k", "existing_out_file")),
    Mutant("a video 5% short of its header is not reported", "pyfer/video.py",
           "announced - read > max(1, announced // 50)", "announced - read > max(1, announced // 20)",
           ("tests/test_video.py", "-k", "slack")),
    Mutant("a JPEG 2000 size ignores the image offset", "pyfer/image_size.py",
           "return max(x_size - x_offset, 0), max(y_size - y_offset, 0)", "return x_size, y_size",
           ("tests/test_image_size.py", "-k", "image_offset")),
    Mutant("a version-1 track header read at version 0's place", "pyfer/image_size.py",
           "at = start + (88 if data[start] == 1 else 76)", "at = start + 76",
           ("tests/test_image_size.py", "-k", "track_header")),
    Mutant("a track header's size rounded down", "pyfer/image_size.py",
           "sizes.append((-(-width >> 16), -(-height >> 16)))", "sizes.append((width >> 16, height >> 16))",
           ("tests/test_image_size.py", "-k", "track_header")),
    Mutant("the CSV is not flushed after each image", "pyfer/cli.py",
           "                csv_file.flush()  # complete rows on disk even if the run is stopped later\n", "",
           ("tests/test_cli.py", "-k", "on_disk_before")),
    Mutant("the chart picks faces by id, not by frames found", "pyfer/video.py",
           "ranked = sorted(self.times, key=lambda t: (-len(self.times[t]), t))", "ranked = sorted(self.times)",
           ("tests/test_video.py", "-k", "found_most")),
    Mutant("the chart's note names the faces left out unsorted", "pyfer/video.py",
           "key=lambda t: (self.times[t][0], t)), sorted(ranked[tracks:])",
           "key=lambda t: (self.times[t][0], t)), ranked[tracks:]", ("tests/test_video.py", "-k", "found_most")),
    Mutant("a sticky folder only its group may write is not shared", "pyfer/atomic.py",
           "folder.st_mode & (stat.S_IWOTH | stat.S_IWGRP)", "folder.st_mode & stat.S_IWOTH",
           ("tests/test_atomic.py", "-k", "shared_folder_rules")),
    Mutant("the shared folder owner's file is another user's", "pyfer/atomic.py",
           "file.st_uid not in (os.geteuid(), folder.st_uid)", "file.st_uid != os.geteuid()",
           ("tests/test_atomic.py", "-k", "shared_folder_rules")),
    Mutant("a data file is only looked at, not read, before the run folder", "training/data.py",
           'with open(path, "rb") as f:\n            f.read(1)', "path.stat()",
           ("tests/test_permissions.py", "-k", "data_file")),
    Mutant("libjpeg's message on a damaged JPEG left bare", "pyfer/cli.py",
           "if not args.own_process:\n            return load_image(source)",
           "if True:\n            return load_image(source)", ("tests/test_cli.py", "-k", "libjpeg")),
    Mutant('rotations without a quarter turn fail on a fair face', "pyfer/yunet.py",
           'if turns:\n            turned',
           'if self.rotations and max(h, w) * scale <= TURN_MAX_SIDE and best < TURN_QUARTER_BELOW:\n            turned', ("tests/test_detect.py", "-k", 'quarter_turn')),
    Mutant("a second look's window clipped at the bottom by the width", "pyfer/yunet.py",
           'x1, y1 = min(w, int(cx + side / 2) + 1), min(h, int(cy + side / 2) + 1)',
           'x1, y1 = min(w, int(cx + side / 2) + 1), min(w, int(cy + side / 2) + 1)', ("tests/test_detect.py", "-k", 'second_look_is')),
    Mutant("a second look's zoom not capped", "pyfer/yunet.py",
           'zoom = min(RECHECK_MAX_ZOOM, RECHECK_FACE / max(bw, bh))',
           'zoom = RECHECK_FACE / max(bw, bh)', ("tests/test_detect.py", "-k", 'second_look_is')),
    Mutant("the turned canvas's height by its width's formula", "pyfer/yunet.py",
           'cw, ch = int(np.ceil(w * c + h * s)), int(np.ceil(w * s + h * c))',
           'cw, ch = int(np.ceil(w * c + h * s)), int(np.ceil(w * c + h * s))', ("tests/test_detect.py", "-k", 'turned_pass_searches')),
    Mutant("a turned find's centre tested against the width for y", "pyfer/yunet.py",
           '(centre[:, 1] >= 0) & (centre[:, 1] < h)',
           '(centre[:, 1] >= 0) & (centre[:, 1] < w)', ("tests/test_detect.py", "-k", 'turned_pass_searches')),
    Mutant('the coarse pass for every strip', "pyfer/yunet.py",
           'too_big_possible = min(h, w) * scale > NET_MAX_FACE',
           'too_big_possible = max(h, w) * scale > NET_MAX_FACE', ("tests/test_detect.py", "-k", 'coarse_pass_runs')),
    Mutant('no coarse pass when nothing is found', "pyfer/yunet.py",
           'if len(rows) == 0 or coarse < 0.6 * scale:',
           'if coarse < 0.6 * scale:', ("tests/test_detect.py", "-k", 'coarse_pass_runs')),
    Mutant('turned passes for strips', "pyfer/yunet.py",
           'if max(h, w) * scale <= TURN_MAX_SIDE and best < TURN_QUARTER_BELOW:',
           'if min(h, w) * scale <= TURN_MAX_SIDE and best < TURN_QUARTER_BELOW:', ("tests/test_detect.py", "-k", 'by_their_long_side')),
    Mutant('min_face by the box width', "pyfer/yunet.py",
           'rows = rows[np.maximum(rows[:, 2], rows[:, 3]) >= self.min_face]',
           'rows = rows[rows[:, 2] >= self.min_face]', ("tests/test_detect.py", "-k", 'min_face_is')),
    Mutant('box corners cut, not rounded', "pyfer/yunet.py",
           'box = (int(round(float(r[0]))), int(round(float(r[1]))), int(round(bw)), int(round(bh)))',
           'box = (int(float(r[0])), int(float(r[1])), int(round(bw)), int(round(bh)))', ("tests/test_detect.py", "-k", 'min_face_is')),
    Mutant("landmarks' y band by the box width", "pyfer/yunet.py",
           'ok &= ((py >= (y - 0.25 * h)[:, None]) & (py <= (y + 1.25 * h)[:, None])).all(1)',
           'ok &= ((py >= (y - 0.25 * w)[:, None]) & (py <= (y + 1.25 * w)[:, None])).all(1)', ("tests/test_detect.py", "-k", 'tall_narrow')),
    Mutant('the nested rule clips the bottom by the width', "pyfer/yunet.py",
           'y1 = np.clip(rows[:, 0] + rows[:, 2], 0, width), np.clip(rows[:, 1] + rows[:, 3], 0, height)',
           'y1 = np.clip(rows[:, 0] + rows[:, 2], 0, width), np.clip(rows[:, 1] + rows[:, 3], 0, width)', ("tests/test_detect.py", "-k", 'drop_nested')),
    Mutant("the detector's settings forget tilted", "pyfer/yunet.py",
           '"rotations": list(self.rotations), "tilted": self.tilted}',
           '"rotations": list(self.rotations)}', ("tests/test_detect.py", "-k", 'tilted_is')),
    Mutant('an export bakes the prior shift with the wrong sign', 'training/export.py',
           'folded.fc.bias.add_(torch.as_tensor(prior_shift * np.log(class_prior)',
           'folded.fc.bias.sub_(torch.as_tensor(prior_shift * np.log(class_prior)', ('tests/test_export_cli.py', '-k', 'baked')),
    Mutant('an export stores its class prior unnormalised', 'training/export.py',
           '        class_prior = class_prior / class_prior.sum()\n',
           '', ('tests/test_export_cli.py', '-k', 'baked')),
    Mutant("a checkpoint's baked shift read from its metadata", 'training/export.py',
           '    if not str(path).endswith(".safetensors"):\n        return 0.0\n',
           '', ('tests/test_export_cli.py', '-k', 'baked')),
    Mutant('BatchNorm folded without its eps', 'training/models.py',
           'scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)',
           'scale = bn.weight / torch.sqrt(bn.running_var)', ('tests/test_models.py', '-k', 'round_trip')),
    Mutant('ShuffleNetV2 0.5x with a narrow conv5', 'training/models.py',
           '0.5: (24, 48, 96, 192, 1024),',
           '0.5: (24, 48, 96, 192, 512),', ('tests/test_models.py', '-k', 'width_table')),
    Mutant('a stored class prior with a zero accepted', 'pyfer/recognizer.py',
           'if prior.shape != (len(self.class_names),) or not (prior > 0).all():',
           'if prior.shape != (len(self.class_names),) or not (prior >= 0).all():', ('tests/test_recognizer.py', '-k', 'malformed_stored')),
    Mutant('detect() without a detector swaps width and height', 'pyfer/recognizer.py',
           'return [((0, 0, img.shape[1], img.shape[0]), None, None)]',
           'return [((0, 0, img.shape[0], img.shape[1]), None, None)]', ('tests/test_recognizer.py', '-k', 'detect_without')),
    Mutant('a label with spaces does not match a class with underscores', 'pyfer/evaluate.py',
           'key = label.strip().lower().replace(" ", "_")',
           'key = label.strip().lower()', ('tests/test_evaluate_cli.py', '-k', 'own_class_name')),
    Mutant("a common name before the model's own class name", 'pyfer/evaluate.py',
           'for name in (key, LABEL_SYNONYMS.get(key)):',
           'for name in (LABEL_SYNONYMS.get(key), key):', ('tests/test_evaluate_cli.py', '-k', 'own_class_name')),
    Mutant('a CSV row without a label field is an IndexError', 'pyfer/evaluate.py',
           'if len(row) <= max(at_path, at_label) or not row[at_label].strip():',
           'if len(row) < max(at_path, at_label) or not row[at_label].strip():', ('tests/test_evaluate_cli.py', '-k', 'csv_headers')),
    Mutant('a symlinked image is the file it links to', 'pyfer/resume.py',
           'return os.path.normcase(os.path.join(os.path.realpath(p.parent), p.name))',
           'return os.path.normcase(os.path.realpath(p))', ('tests/test_resume_csv.py', '-k', 'symlinked')),
    Mutant('a setting the sidecar lacks is not compared', 'pyfer/resume.py',
           'for k in set(recorded["settings"]) | set(settings)',
           'for k in set(recorded["settings"])', ('tests/test_resume_csv.py', '-k', 'did_not_record')),
    Mutant('one relative path among absolute ones is not refused', 'pyfer/resume.py',
           'if rows and cwd != os.getcwd() and any(not p.is_absolute() for p in inputs):',
           'if rows and cwd != os.getcwd() and all(not p.is_absolute() for p in inputs):', ('tests/test_resume_csv.py', '-k', 'another_folder')),
    Mutant('a resume from another folder records that folder', 'pyfer/resume.py',
           '_write_sidecar(path, settings, first_cwd or os.getcwd())',
           '_write_sidecar(path, settings, os.getcwd())', ('tests/test_resume_csv.py', '-k', 'another_folder')),
    Mutant('a last row without its line end is kept', 'pyfer/resume.py',
           'if len(row) != len(header) or not ended:',
           'if len(row) != len(header):', ('tests/test_resume_csv.py', '-k', 'line_end')),
    Mutant('a file opened while descriptor 2 is closed becomes descriptor 2', 'pyfer/c_stderr.py',
           '    if _has_descriptor_2():\n',
           '    if True:\n', ('tests/test_c_stderr.py',)),
    Mutant("with stderr closed, pyfer's messages go to stdout", 'pyfer/cli.py',
           '        if sys.stderr is None:  # started with stderr closed',
           '        if False:  # started with stderr closed', ('tests/test_cli.py', '-k', 'libjpeg')),
    Mutant('a found track keeps its missed count', 'pyfer/video.py',
           't.missed, t.age = 0, t.age + 1',
           't.age = t.age + 1', ('tests/test_video.py', '-k', 'missed_count')),
    Mutant('max_missed lets a track miss one frame fewer', 'pyfer/video.py',
           'return t.missed <= self.max_missed',
           'return t.missed < self.max_missed', ('tests/test_video.py', '-k', 'missed_count')),
    Mutant('a face overlapping a track by IoU 0.15-0.3 continues it', 'pyfer/video.py',
           '            if v < self.iou_threshold:\n                break',
           '            if v < self.iou_threshold / 2:\n                break', ('tests/test_video.py', '-k', 'hidden_behind')),
    Mutant("a held face's bottom edge tested against the width", 'pyfer/video.py',
           'box[1] >= shape[0] or box[0] + box[2] <= 0',
           'box[1] >= shape[1] or box[0] + box[2] <= 0', ('tests/test_video.py', '-k', 'moved_out')),
    Mutant('a held box not moved by motion in y', 'pyfer/video.py',
           'dx, dy = px - t.box[0], py - t.box[1]',
           'dx, dy = px - t.box[0], 0.0', ('tests/test_video.py', '-k', 'moved_out')),
    Mutant('smoothed boxes made square', 'pyfer/video.py',
           'f = replace(f, box=(x0, y0, max(1, x1 - x0), max(1, y1 - y0)))',
           'f = replace(f, box=(x0, y0, max(1, x1 - x0), max(1, x1 - x0)))', ('tests/test_video.py', '-k', 'keep_their_shape')),
    Mutant('smoothed landmarks with x and y swapped', 'pyfer/video.py',
           'landmarks=tuple((float(s[i]), float(s[i + 1])) for i',
           'landmarks=tuple((float(s[i + 1]), float(s[i])) for i', ('tests/test_video.py', '-k', 'keep_their_shape')),
    Mutant("a scene cut's unevenness measured from the mean change", 'pyfer/video.py',
           'np.abs(change - np.median(change))',
           'np.abs(change - np.mean(change))', ('tests/test_video.py', '-k', 'typical_one')),
    Mutant('a summary label by the most frequent top class', 'pyfer/video.py',
           '"label": names[int(np.argmax(mean))]',
           '"label": names[int(np.argmax(top))]', ('tests/test_video.py', '-k', 'highest_mean')),
    Mutant('summary rows in id order', 'pyfer/video.py',
           'for tid in sorted(self.times, key=lambda t: (self.times[t][0], t)):',
           'for tid in sorted(self.times):', ('tests/test_video.py', '-k', 'highest_mean')),
    Mutant("max_frames taken for the file's length past undecodable frames", 'pyfer/video.py',
           'not (announced > 0 and n + skipped + bad >= announced)',
           'not (announced > 0 and n + skipped + bad >= min(announced, max_frames or announced))', ('tests/test_video.py', '-k', 'max_frames_counts')),
    Mutant('an output is an input only by its spelling', 'pyfer/cli.py',
           'if os.path.samefile(out, p):',
           'if out == str(p):', ('tests/test_cli.py', '-k', 'never_replace')),
    Mutant('video --no-smoothing still holds missed faces', 'pyfer/cli.py',
           'IoUTracker(alpha=1.0, smooth_geometry=False, hold_seconds=0.0)',
           'IoUTracker(alpha=1.0, smooth_geometry=False)', ('tests/test_cli.py', '-k', 'holds_no_missed')),
    Mutant('video --timeline alone writes no chart', 'pyfer/cli.py',
           'timeline = Timeline() if args.summary or args.timeline else None',
           'timeline = Timeline() if args.summary else None', ('tests/test_cli.py', '-k', 'video_summary_and_timeline')),
    Mutant('video --timeline refuses a suffix in capitals', 'pyfer/cli.py',
           'if Path(args.timeline).suffix.lower() not in (".png", ".pdf", ".svg"):',
           'if Path(args.timeline).suffix not in (".png", ".pdf", ".svg"):', ('tests/test_cli.py', '-k', 'video_summary_and_timeline')),
    Mutant('augmentation shears instead of rotating', 'training/data.py',
           'theta = torch.stack([torch.stack([cos * flip, -sin, shift[:, 0]], 1),',
           'theta = torch.stack([torch.stack([cos * flip, sin, shift[:, 0]], 1),', ('tests/test_data.py', '-k', 'rotates_by')),
    Mutant('augmentation rotates by radians', 'training/data.py',
           'angle = (rand(b) * 2 - 1) * math.radians(spec.max_rotate_deg)',
           'angle = (rand(b) * 2 - 1) * spec.max_rotate_deg', ('tests/test_data.py', '-k', 'rotates_by')),
    Mutant('augmentation only brightens', 'training/data.py',
           'bright = (rand(b, 1, 1, 1) * 2 - 1) * spec.brightness',
           'bright = rand(b, 1, 1, 1) * spec.brightness', ('tests/test_data.py', '-k', 'light_effects')),
    Mutant("augmentation's contrast about 0, not the mean", 'training/data.py',
           'x = ((x - mean) * contrast + mean + bright).clamp(0, 1)',
           'x = (x * contrast + bright).clamp(0, 1)', ('tests/test_data.py', '-k', 'light_effects')),
    Mutant("augmentation's gamma only darkens", 'training/data.py',
           'g = torch.exp((rand(b, 1, 1, 1) * 2 - 1) * math.log1p(spec.gamma))',
           'g = torch.exp(rand(b, 1, 1, 1) * math.log1p(spec.gamma))', ('tests/test_data.py', '-k', 'light_effects')),
    Mutant("augmentation's blur kernel not normalised", 'training/data.py',
           '        k = k / k.sum()\n',
           '', ('tests/test_data.py', '-k', 'light_effects')),
    Mutant('mixup leaves the targets unmixed', 'training/train.py',
           'target = lam * target + (1 - lam) * target[perm]',
           'target = lam * target + (1 - lam) * target', ('tests/test_recipe.py', '-k', 'mixes_the_targets')),
    Mutant('mixup leaves the cached teacher answers unmixed', 'training/train.py',
           't_probs = lam * t_probs + (1 - lam) * t_probs[perm]',
           't_probs = lam * t_probs + (1 - lam) * t_probs', ('tests/test_recipe.py', '-k', 'mixes_the_targets')),
    Mutant('resume writes a worse last epoch over best.pt', 'training/train.py',
           '    if state["best_epoch"] != state["epoch"]:\n        return\n',
           '', ('tests/test_resume.py', '-k', 'leaves_best_pt_alone')),
    Mutant('annotated copies numbered from 1', 'pyfer/cli.py',
           'f"{stem}_annotated{\'\' if n == 1 else n}{dest.suffix}"',
           'f"{stem}_annotated{n}{dest.suffix}"', ('tests/test_cli.py', '-k', 'not_read_yet')),
    Mutant("a relative glob's first folder not read literally", 'pyfer/cli.py',
           'for k in range(len(parts) - 1, 0, -1):',
           'for k in range(len(parts) - 1, 1, -1):', ('tests/test_cli.py', '-k', 'brackets')),
    Mutant("the JPEG augmentation writes a face into another's place", 'training/data.py',
           'out[i, 0] = torch.from_numpy(',
           'out[j, 0] = torch.from_numpy(', ('tests/test_data.py', '-k', 'its_place')),
    Mutant('erased rectangles are square', 'training/data.py',
           '(ys >= y0.view(-1, 1, 1)) & (ys < (y0 + h).view(-1, 1, 1))',
           '(ys >= y0.view(-1, 1, 1)) & (ys < (y0 + w).view(-1, 1, 1))', ('tests/test_data.py', '-k', 'either_shape')),
    Mutant('erased rectangles are black', 'training/data.py',
           'x = torch.where(box.unsqueeze(1), rand(b, 1, 1, 1).expand_as(x), x)',
           'x = torch.where(box.unsqueeze(1), torch.zeros_like(x), x)', ('tests/test_data.py', '-k', 'either_shape')),
    Mutant('a 16-bit manifest image scaled by 65535', 'training/data.py',
           'img = cv2.convertScaleAbs(img, alpha=255.0 / max(1, int(img.max())))',
           'img = cv2.convertScaleAbs(img, alpha=255.0 / 65535)', ('tests/test_data.py', '-k', '16_bit')),
    Mutant("cutmix draws with mixup's alpha", 'training/train.py',
           'alpha = mixup if kind == "mixup" else cutmix',
           'alpha = mixup if mixup > 0 else cutmix', ('tests/test_recipe.py', '-k', 'batch_mixer')),
    Mutant("a held box's size change not capped", 'pyfer/video.py',
           'sw = min(2.0, max(0.5, pw / t.box[2])) if t.box[2] > 0 else 1.0',
           'sw = pw / t.box[2] if t.box[2] > 0 else 1.0', ('tests/test_video.py', '-k', 'sane_size')),
    Mutant("held landmarks' y scaled by the width's change", 'pyfer/video.py',
           'landmarks = tuple((nx + (lx - x) * sw, ny + (ly - y) * sh)',
           'landmarks = tuple((nx + (lx - x) * sw, ny + (ly - y) * sw)', ('tests/test_video.py', '-k', 'sane_size')),
    Mutant('video --max-frames 0 left to process_video', 'pyfer/cli.py',
           'if args.max_frames is not None and args.max_frames < 1:',
           'if args.max_frames is not None and args.max_frames < 0:', ('tests/test_cli.py', '-k', 'video_usage_checks')),
    Mutant("the 1€ filter's speed low-passed at min_cutoff", 'pyfer/video.py',
           'a = self._weight(self.d_cutoff, dt)',
           'a = self._weight(self.min_cutoff, dt)', ('tests/test_video.py', '-k', 'own_cutoffs')),
    Mutant("a track's velocity not low-passed", 'pyfer/video.py',
           '            a = OneEuroFilter._weight(VELOCITY_CUTOFF, dt)\n',
           '            a = 1.0\n', ('tests/test_video.py', '-k', 'own_cutoffs')),
    Mutant("a CLAHE student's teacher gets the student's crops pasted in by cutmix", 'training/train.py',
           'xt = x if x_teacher is None else paste_box(xt, xt[perm], box)[0]',
           'xt = x if x_teacher is None else paste_box(xt, x[perm], box)[0]', ('tests/test_recipe.py', '-k', 'clahe_student')),
    # session 50: label placement's rules the fourth review left without tests
    Mutant("a covered label weighs as a covered face", "pyfer/video.py", "LABEL_OVER_LABEL_COST = 8",
           "LABEL_OVER_LABEL_COST = 1", ("tests/test_video.py", "-k", "covers_a_face_before")),
    Mutant("kept label spots taken though a label is shorter", "pyfer/video.py",
           "len(k.text) < len(f.text) or k.scale < f.scale", "k.scale < f.scale",
           ("tests/test_video.py", "-k", "kept_label_spot_is_left")),
    Mutant("kept label spots taken though they cover more", "pyfer/video.py",
           "return covered(kept) <= covered(fresh)", "return True", ("tests/test_video.py", "-k", "kept_label_spot_is_left")),
    # session 50: the fifth review's worst survivor
    Mutant("a shrunk big face's region offset with x and y swapped", "pyfer/facenorm.py",
           "m[:, :2] @ np.array([cx0, cy0]) + m[:, 2]", "m[:, :2] @ np.array([cy0, cx0]) + m[:, 2]",
           ("tests/test_facenorm.py", "-k", "shrunk_big")),
    # session 50: annotated copies carry a mark, and a later run over their folder leaves them out
    Mutant("annotated copies written without the mark", "pyfer/cli.py", "copy.write(mark_annotated(encoded.tobytes()))",
           "copy.write(encoded.tobytes())", ("tests/test_cli.py", "-k", "leaves_out_its_annotated_copies")),
    Mutant("a glob keeps the annotated copies", "pyfer/cli.py", "files, n = without_annotated_copies(files)",
           "n = 0", ("tests/test_cli.py", "-k", "leaves_out_its_annotated_copies")),
    Mutant("evaluate reads annotated copies as faces", "pyfer/evaluate.py",
           "for p in without_annotated_copies(image_files(sub, recursive=True))[0]]",
           "for p in image_files(sub, recursive=True)]", ("tests/test_evaluate_cli.py", "-k", "skipped_as_predict")),
    Mutant("the JPEG mark before JFIF's APP0", "pyfer/files.py", "at = 4 + struct.unpack", "_ = 4 + struct.unpack",
           ("tests/test_cli.py", "-k", "annotated_copy_mark")),
)

# Removes the editable install's finder (scikit-build-core's redirecting finder runs before
# PYTHONPATH), so that ``import pyfer`` finds the copy
SITECUSTOMIZE = """import sys
sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith("_editable_skbc")]
"""


def built_modules() -> list[Path]:
    """The compiled modules of the pyfer this interpreter imports (an editable install keeps them
    in site-packages, a source build in pyfer/)."""
    found = []
    for name in ("pyfer._engine", "pyfer._checks"):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            found.append(Path(spec.origin))
    if not found:
        raise SystemExit("pyfer's compiled engine is not importable: install the project first")
    return found


def make_copy(root: Path) -> Path:
    """The repository's Python code copied under ``root/repo``, the rest linked; ``root/shared``
    links the data sets the tests find next to the repository."""
    copy = root / "repo"
    copy.mkdir()
    for folder in ("pyfer", "training", "tests", "scripts"):
        shutil.copytree(REPO / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    for module in built_modules():
        shutil.copy2(module, copy / "pyfer" / module.name)
    for entry in REPO.iterdir():  # (not the caches: a mutant's answers must not reach the real ones)
        if not (copy / entry.name).exists() and not entry.name.startswith(".") and entry.name != "build":
            (copy / entry.name).symlink_to(entry)
    if (REPO.parent / "shared").exists():
        (root / "shared").symlink_to(REPO.parent / "shared")
    (copy / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return copy


def run_tests(copy: Path, tests: tuple[str, ...]) -> tuple[bool, str]:
    """(whether the tests passed, pytest's last line); a run over 10 minutes counts as failed (a
    mutant that makes a test hang is caught)."""
    env = dict(os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1",
               PYFER_CACHE=str(copy.parent / "cache"))
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                               "--benchmark-disable", *tests], cwd=copy, env=env, capture_output=True, text=True,
                              timeout=600)
    except subprocess.TimeoutExpired:
        return False, "timed out after 600 s"
    lines = (done.stdout + done.stderr).strip().splitlines()
    return done.returncode == 0, lines[-1] if lines else ""


def imports_the_copy(copy: Path) -> bool:
    env = dict(os.environ, PYTHONPATH=str(copy))
    out = subprocess.run([sys.executable, "-c", "import pyfer, pyfer._engine, training.cli; "
                          "print(pyfer.__file__, pyfer._engine.__file__, training.cli.__file__)"],
                         cwd=copy, env=env, capture_output=True, text=True, timeout=120).stdout.split()
    return len(out) == 3 and all(Path(p).resolve().is_relative_to(copy.resolve()) for p in out)


def planted(copy: Path, m: Mutant) -> tuple[bool, str]:
    """``m``'s tests run on ``copy`` with ``m`` planted (and taken out again)."""
    target = copy / m.path
    source = target.read_text(encoding="utf-8")
    target.write_text(source.replace(m.old, m.new), encoding="utf-8")
    try:
        return run_tests(copy, m.tests)
    finally:
        target.write_text(source, encoding="utf-8")


def available_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", metavar="NAME", help="only mutants whose name contains one of these")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--jobs", type=int, default=min(2, available_cpus()), metavar="N",
                    help="test runs at a time, each on a copy of its own (default: 2, or 1 on one CPU)")
    args = ap.parse_args(argv)
    if args.jobs < 1:
        ap.error(f"--jobs must be at least 1, got {args.jobs}")
    mutants = [m for m in MUTANTS if not args.only or any(o in m.name for o in args.only)]
    if args.list:
        for m in mutants:
            print(f"{m.name}: {m.path}; {' '.join(m.tests)}")
        return 0
    for m in mutants:  # a mutant that no longer applies is a stale table, not a pass
        count = (REPO / m.path).read_text(encoding="utf-8").count(m.old)
        if count != 1:
            print(f"check_mutants: '{m.name}': its code occurs {count} times in {m.path}, not once: update the table")
            return 1
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pyfer-mutants-") as tmp:
        copies: queue.Queue[Path] = queue.Queue()
        for k in range(args.jobs):  # one copy per job: a mutant planted in one is in no other's way
            (Path(tmp) / str(k)).mkdir()
            copy = make_copy(Path(tmp) / str(k))
            if not imports_the_copy(copy):
                print("check_mutants: the copy is not what Python imports (an install hook won): nothing checked")
                return 1
            copies.put(copy)

        def on_a_copy(run, what):
            copy = copies.get()
            try:
                return run(copy, what)
            finally:
                copies.put(copy)

        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            selections = sorted({m.tests for m in mutants})
            for tests, (ok, last) in zip(selections, pool.map(lambda t: on_a_copy(run_tests, t), selections)):
                if not ok:
                    print(f"check_mutants: {' '.join(tests)} fails unmutated ({last}): fix it first")
                    return 1
            print(f"{len(selections)} test selections pass unmutated ({time.monotonic() - t0:.0f} s, "
                  f"{args.jobs} at a time)", flush=True)
            survivors = []
            for m, (ok, last) in zip(mutants, pool.map(lambda m: on_a_copy(planted, m), mutants)):
                print(f"{'SURVIVED' if ok else 'killed  '}  {m.name}  ({m.path}; {last})", flush=True)
                if ok:
                    survivors.append(m.name)
    print(f"{len(mutants) - len(survivors)} of {len(mutants)} mutants killed in {time.monotonic() - t0:.0f} s")
    if survivors:
        print("survived: " + "; ".join(survivors))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
