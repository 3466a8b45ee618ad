"""Special token ids shared by every module (the world defines the rest of the vocabulary above these)."""

PAD = 0  # padding after EOS; never predicted, never scored
BOS = 1  # first token of every prompt
EOS = 2  # ends a response (included in the response mask)
SEP = 3  # last token of every prompt: the response starts after it
N_SPECIAL = 4
