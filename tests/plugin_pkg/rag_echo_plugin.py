"""A toy generator backend: repeats the question and cites the best passage. For tests of the registry."""

from rag.types import Answer, Citation


class EchoGenerator:
    name = "echo"
    streams = True

    def __init__(self, settings, embedder=None):
        self.settings = settings

    def stream(self, question, query_vector, hits, store):
        if not hits:
            answer = Answer(question, "Eko: (inga passager)", False, (), (), 0.0, generator=self.name)
        else:
            chunk = hits[0].chunk
            citation = Citation(1, hits[0], chunk.start, chunk.end, chunk.text, hits[0].score)
            answer = Answer(question, f"Eko: {question} [1]", True, (citation,), tuple(hits), 1.0, generator=self.name)
        for i, word in enumerate(answer.text.split(" ")):
            yield word if i == 0 else " " + word
        yield answer
