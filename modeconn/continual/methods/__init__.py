"""The continual methods, one file each, and the pieces they share.

    protocol.py    what the loop hands a method (Batch, TaskContext, Scorer) and the hooks it calls (Method)
    base.py        MethodBase: every hook's default;  option.py  options declared as dataclass fields
    seq, seq_path, er, ewc, mtl, one, agem, gem, l2p, pp, olora, sure, ilora   one file per method
    replay.py, gradients.py, slow_learner.py, prompts.py, buffer_state.py   pieces several methods use
    registry.py    the methods by name, and their options as the CLI and config files see them
"""
