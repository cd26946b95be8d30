"""How bench/speech.py scores a transcript: words differ only where Whisper's English normaliser says they do."""

from bench.speech import normalise, word_errors


def test_writing_conventions_are_not_word_errors():
    assert word_errors("I received the wrong colour, what now?", "I received the wrong color. What now") == 0
    assert word_errors("Is the t-shirt made of cotton?", "Is the T shirt made of cotton") == 0
    assert word_errors("It costs $42.", "It costs forty-two dollars.") == 0
    assert word_errors("Returns within 30 days.", "Returns within thirty days") == 0
    assert word_errors("Where's my refund?", "Where is my refund?") == 0
    assert word_errors("Hmm, where is my refund?", "where is my refund") == 0


def test_misheard_missing_and_extra_words_each_count_once():
    assert word_errors("Is this backpack waterproof?", "Is this backpack, walk or proof?") == 3
    assert word_errors("Where is my refund?", "Where is refund") == 1
    assert word_errors("Where is my refund?", "So where is my refund?") == 1
    assert word_errors("Where is my refund?", "") == 4


def test_normalised_words_are_what_the_bench_records():
    assert normalise("I won't pay forty-two dollars for a T-shirt in that colour!") == [
        "i", "will", "not", "pay", "$42", "for", "a", "t", "shirt", "in", "that", "color"]


def test_the_summary_gives_wer_by_voice_and_keeps_each_misheard_clip():
    from bench.speech import summarise

    def row(voice, reference, heard):
        return {"voice": voice, "reference": reference, "heard": heard, "scored": [], "audio_s": 2.0,
                "compute_s": 0.5, "cpu_s": 0.8, "errors": word_errors(reference, heard), "words": len(normalise(reference))}

    summary = summarise([row("en-gb@150", "Where is my refund?", "Where is my refund"),
                         row("en-gb@150", "Is this backpack waterproof?", "Is this backpack, walk or proof?"),
                         row("en-us@150", "How do I track my parcel?", "How do I track my parcel?")])
    assert summary["wer_by_voice"] == {"en-gb@150": 0.375, "en-us@150": 0.0}
    assert summary["wer"] == round(3 / 14, 4) and summary["rtf"] == 0.25 and summary["cpu_per_audio_s"] == 0.4
    assert [(e["voice"], e["heard"], e["errors"]) for e in summary["errors"]] == [
        ("en-gb@150", "Is this backpack, walk or proof?", 3)]
