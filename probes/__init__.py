"""Probes that predict a reward hack before any RL (issue 31), at the optimizer layer beside bon/ and rl/.

edits   prompt-independent edits of responses (the global moves), vectorised and kept valid
tables  the global-move probe (mean Δproxy against mean Δgold and each gold term's, per move; flagged
        moves) and the confusion probe (wrong-for-right substitutions the proxy prefers)

"""
