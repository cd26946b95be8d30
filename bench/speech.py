"""Voice questions: word error rate and speed of the bundled Whisper tiny.en on 50 spoken support questions.

Each question is spoken by Debian's espeak-ng (voices and speeds in rotation), transcribed with the app's settings
(VAD on, the sample catalog's words as hotwords) at int8 (the CPU default), float32 and int8 without the catalog's
words, on 2 threads, the three taking each clip in turn. Words are compared after Whisper's English text normaliser.
``--every-voice`` adds every question in every voice at int8, so the voices are compared over the same sentences.
Also: the first load of the model, and the time from the end of a recording (the file attached) to the first answer
token in the chat with an instant scripted model. Writes bench/results/speech.{json,png}: WER and RTF per run, WER
by voice, and each clip with errors (what was said, what was heard, the words scored).

    python bench/speech.py [--threads 2] [--every-voice] [--out bench/results/speech.json]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.machine import write_result  # noqa: E402
from mmsupport.config import load_settings  # noqa: E402
from mmsupport.vlm import VLM  # noqa: E402

QUESTIONS = [
    "My watch button is flashing red, what does that mean?",
    "Is this backpack waterproof?",
    "My parcel arrived but the box was damaged.",
    "How do I return a jacket that does not fit?",
    "Do you sell running shoes in blue?",
    "The zipper on my hoodie broke after a week.",
    "How long does delivery take to Scotland?",
    "Can I change the address on my order?",
    "My headphones will not pair with my phone.",
    "Is the warranty still valid after one year?",
    "Do these jeans come in a larger size?",
    "How do I wash a down jacket?",
    "The speaker keeps turning itself off.",
    "Where is my refund?",
    "Do you have the same boots in black?",
    "My smartwatch does not charge any more.",
    "Can I cancel my order before it ships?",
    "What size should I order if I am between sizes?",
    "The sole of my sneakers is coming off.",
    "Do you ship to other countries?",
    "My earbuds only play sound on one side.",
    "How much does express shipping cost?",
    "Is this dress available in red?",
    "I received the wrong colour, what should I do?",
    "How do I reset my fitness band?",
    "Are these sandals good for walking?",
    "The phone charger gets very hot.",
    "Can I exchange a gift without a receipt?",
    "When will the green tote bag be back in stock?",
    "My order says delivered but I have nothing.",
    "Does the jacket have a hood?",
    "How do I track my parcel?",
    "The heart rate on my watch looks wrong.",
    "Can I pay when the parcel arrives?",
    "Is the t-shirt made of cotton?",
    "My boots leak when it rains.",
    "How do I update the firmware on my watch?",
    "Do you have a cheaper backpack for school?",
    "The strap on my bag snapped.",
    "What is your return policy for sale items?",
    "My headset light is blinking blue.",
    "Can I return shoes I have worn outside?",
    "Do you offer a student discount?",
    "The battery on my speaker drains overnight.",
    "I want to talk to a person about my order.",
    "Are the hiking boots true to size?",
    "My package was left at the wrong house.",
    "Do you sell chargers for the smartwatch?",
    "The colour of my hoodie faded after washing.",
    "How do I know if my warranty covers this?",
]
VOICES = [("en-gb", 150), ("en-us", 150), ("en-gb-x-rp", 140), ("en-gb-scotland", 160), ("en-gb", 180)]


def normalise(text: str) -> list[str]:
    """The words Whisper's English text normaliser leaves (the one Whisper's own WER figures use): case and
    punctuation dropped, numbers, currency and per cent as digits (``forty-two dollars`` -> ``$42``), contractions
    spelled out (``won't`` -> ``will not``), British spellings as American (``colour`` -> ``color``), fillers dropped.

    >>> normalise("I won't pay forty-two dollars for a T-shirt in that colour!")
    ['i', 'will', 'not', 'pay', '$42', 'for', 'a', 't', 'shirt', 'in', 'that', 'color']
    """
    return _whisper_normaliser()(text).split()


@functools.cache
def _whisper_normaliser():
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


def word_errors(reference: str, heard: str) -> int:
    """Substituted, deleted and inserted words between two texts, after :func:`normalise`."""
    return edit_distance(normalise(reference), normalise(heard))


def edit_distance(reference: list[str], hypothesis: list[str]) -> int:
    """Levenshtein distance between two word lists."""
    row = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        previous, row[0] = row[0], i
        for j, hyp in enumerate(hypothesis, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (ref != hyp))
    return row[-1]


def speak(folder: Path, every_voice: bool = False) -> list[dict]:
    """The questions as WAVs, each in the next voice of :data:`VOICES` in turn, or in every voice."""
    clips = []
    for n, text in enumerate(QUESTIONS):
        for voice, speed in VOICES if every_voice else [VOICES[n % len(VOICES)]]:
            path = folder / f"q{n:02d}-{voice}-{speed}.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text], check=True)
            clips.append({"text": text, "voice": f"{voice}@{speed}", "path": path})
    return clips


def measure(runs: dict[str, tuple], clips: list[dict], settings) -> dict[str, dict]:
    """Word error rate and real-time factor of each run (name -> ``(asr, prompt)``) over ``clips``; the runs take
    each clip in turn, so a change of load on the machine weighs on all of them alike."""
    from mmsupport.speech import load_audio

    rows: dict[str, list[dict]] = {name: [] for name in runs}
    for clip in clips:
        samples = load_audio(clip["path"], max_seconds=settings.max_audio_seconds, max_mb=settings.max_upload_mb)
        for name, (asr, prompt) in runs.items():
            started, cpu_started = time.perf_counter(), time.process_time()
            transcript = asr.transcribe_audio(samples, prompt=prompt)
            seconds, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
            reference, hypothesis = normalise(clip["text"]), normalise(transcript.text)
            rows[name].append({"voice": clip["voice"], "reference": clip["text"], "heard": transcript.text,
                               "scored": [" ".join(reference), " ".join(hypothesis)],
                               "errors": edit_distance(reference, hypothesis), "words": len(reference),
                               "audio_s": transcript.duration_s, "compute_s": seconds, "cpu_s": cpu_s})
    return {name: summarise(rows[name]) for name in runs}


def summarise(rows: list[dict]) -> dict:
    """WER and RTF over ``rows``, WER by voice, and the clips that have errors.

    ``rtf`` is wall-clock time per second of audio. ``cpu_per_audio_s`` is the process's CPU time (all threads) per
    second of audio: other work on a shared host barely moves it, so it tells a busy machine from a slower
    transcriber (on an idle host with 2 threads the RTF is at least half of it)."""
    per_voice: dict[str, list[int]] = {}
    for row in rows:
        errors, words = per_voice.setdefault(row["voice"], [0, 0])
        per_voice[row["voice"]] = [errors + row["errors"], words + row["words"]]
    audio_s, compute_s = sum(r["audio_s"] for r in rows), sum(r["compute_s"] for r in rows)
    return {"wer": round(sum(r["errors"] for r in rows) / sum(r["words"] for r in rows), 4),
            "rtf": round(compute_s / audio_s, 4), "audio_s": round(audio_s, 1), "compute_s": round(compute_s, 2),
            "cpu_per_audio_s": round(sum(r["cpu_s"] for r in rows) / audio_s, 4),
            "wer_by_voice": {voice: round(e / w, 4) for voice, (e, w) in per_voice.items()},
            "errors": [{k: row[k] for k in ("voice", "reference", "heard", "scored", "errors")}
                       for row in rows if row["errors"]]}


class InstantVLM(VLM):
    """A model that answers at once, so the figure is the voice and retrieval path alone."""

    name = "instant"

    def stream(self, messages, **kwargs):
        yield "The best match is [A001]."


def first_answer_token(settings, catalog, clip: Path, runs: int = 5) -> dict:
    """From the recording attached (end of recording) to the first answer piece, through the chat handlers."""
    from mmsupport.app.chat import Chat
    from mmsupport.app.resources import Resources
    from mmsupport.store import ConversationStore

    resources = Resources(settings, vlm=InstantVLM(), catalog=catalog)
    chat = Chat(settings, resources, ConversationStore(f"sqlite:///{Path(tempfile.mkdtemp()) / 'conversations.db'}"))
    resources.asr()  # loaded, as after the first voice message
    times = []
    for _ in range(runs + 1):
        message = {"text": "", "files": [str(clip)]}
        started = time.perf_counter()
        _, uploads, _ = chat.attach(message, {})
        history, _, _, uploads = chat.add_message(message, [], uploads)
        for outputs in chat.respond(history, "hybrid", 5, "All", [], uploads):
            if outputs[0][-1]["role"] == "assistant" and not outputs[0][-1].get("metadata"):
                times.append(time.perf_counter() - started)
                break
    times = times[1:]  # the first run warms the caches
    return {"p50_s": round(statistics.median(times), 3), "max_s": round(max(times), 3), "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "speech.json")
    parser.add_argument("--every-voice", action="store_true",
                        help="also every question in every voice at int8 (WER by voice over the same sentences)")
    args = parser.parse_args()

    load_at_start = os.getloadavg()[0]
    started = time.perf_counter()
    from mmsupport.speech import WhisperASR

    int8 = WhisperASR(load_settings().asr_model, compute_type="int8", cpu_threads=args.threads)
    first_load_s = time.perf_counter() - started

    folder = Path(tempfile.mkdtemp())
    settings = load_settings(db_dir=folder / "db")
    from mmsupport.catalog import ensure_sample_catalog
    from mmsupport.speech import catalog_prompt

    catalog = ensure_sample_catalog(settings)
    prompt = catalog_prompt(catalog)
    clips = speak(folder)
    float32 = WhisperASR(settings.asr_model, compute_type="float32", cpu_threads=args.threads)
    results = measure({"int8": (int8, prompt), "float32": (float32, prompt), "int8_without_catalog_words": (int8, "")},
                      clips, settings)
    if args.every_voice:
        results["int8_every_voice"] = measure({"int8": (int8, prompt)}, speak(folder, every_voice=True),
                                              settings)["int8"]
    latency = first_answer_token(settings, catalog, clips[0]["path"])
    result = {"model": settings.asr_model.split("site-packages/")[-1], "threads": args.threads,
              "questions": len(clips), "voices": [f"{v}@{s}" for v, s in VOICES], "prompt": prompt,
              "set": f"{len(clips)} questions, each spoken in the next voice of {len(VOICES)} in turn"
                     + (f"; int8_every_voice: each in all {len(VOICES)}" if args.every_voice else ""),
              "first_load_s": round(first_load_s, 3), "end_of_recording_to_first_token": latency,
              "bars": {"wer_max": 0.10, "rtf_max": 0.3},
              "load_average_1m": [round(load_at_start, 1), round(os.getloadavg()[0], 1)], **results}
    write_result(args.out, result)
    plot(result, args.out.with_suffix(".png"))
    for name in results:
        print(f"{name}: WER {results[name]['wer']:.3f}  RTF {results[name]['rtf']:.3f}  CPU s per audio s "
              f"{results[name]['cpu_per_audio_s']:.3f}  by voice",
              results[name]["wer_by_voice"])
    print(f"first load {first_load_s:.2f} s; end of recording to first token p50 {latency['p50_s']:.2f} s")


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["int8", "float32", "int8_without_catalog_words"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.bar(["int8", "float32", "int8, no hotwords"], [result[n]["wer"] for n in names], color="#4f46e5")
    left.axhline(result["bars"]["wer_max"], color="#dc2626", linestyle="--", label="bar 10%")
    left.set_title("Word error rate, 50 spoken questions")
    left.legend()
    by_voice = result.get("int8_every_voice", result["int8"])["wer_by_voice"]
    right.bar(list(by_voice), list(by_voice.values()), color="#0d9488")
    right.set_title(f"int8 WER by espeak-ng voice (RTF int8 {result['int8']['rtf']:.2f}, "
                    f"float32 {result['float32']['rtf']:.2f})")
    right.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
