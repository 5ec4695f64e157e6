"""A toy generator backend: repeats the question and cites the best passage. For tests of the registry."""

from rag.answer import Answer, Citation


class EchoGenerator:
    name = "echo"
    streams = True
    needs_key = False

    def answer(self, question, query_vector, hits, index, settings) -> Answer:
        if not hits:
            return Answer(question, "Eko: (inga passager)", False, (), (), 0.0, generator=self.name)
        chunk = hits[0].chunk
        citation = Citation(1, hits[0], chunk.start, chunk.end, chunk.text, hits[0].score)
        text = f"Eko: {question} [1]"
        return Answer(question, text, True, (citation,), tuple(hits), 1.0, generator=self.name)

    def stream(self, question, query_vector, hits, index, settings):
        answer = self.answer(question, query_vector, hits, index, settings)
        for i, word in enumerate(answer.text.split(" ")):
            yield word if i == 0 else " " + word
        yield answer
