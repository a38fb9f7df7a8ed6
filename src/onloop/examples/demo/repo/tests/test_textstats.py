import unittest

from textstats import word_count, words


class WordsTest(unittest.TestCase):
    def test_words_lowercases_and_drops_punctuation(self):
        self.assertEqual(words("Hello, World!"), ["hello", "world"])

    def test_word_count(self):
        self.assertEqual(word_count("one two  three"), 3)


if __name__ == "__main__":
    unittest.main()
