# Best parameters of the official GRU4Rec README for rsc15 (200-trial Optuna search, MRR@20).
# The README table's RSC15 row. (The official paramfiles/rsc15_xe_shared_100_best.py differs:
# dropout 0/0.4, learning_rate 0.2, momentum 0.2, sample_alpha 0.5.)
# Read by `nextitem gru4rec -pf rsc15_xe_shared_best`; the file is parsed, never executed.
from collections import OrderedDict

gru4rec_params = OrderedDict([
    ('loss', 'cross-entropy'),
    ('constrained_embedding', True),
    ('embedding', 0),
    ('elu_param', 0.0),
    ('layers', [100]),
    ('n_epochs', 10),
    ('batch_size', 32),
    ('dropout_p_embed', 0.1),
    ('dropout_p_hidden', 0.0),
    ('learning_rate', 0.1),
    ('momentum', 0.0),
    ('n_sample', 2048),
    ('sample_alpha', 0.75),
    ('bpreg', 0.0),
    ('logq', 1.0),
])
