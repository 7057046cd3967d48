# Best parameters of the official GRU4Rec README for coveo (200-trial Optuna search, MRR@20).
# Read by `nextitem gru4rec -pf coveo_bprmax_shared_best`; the file is parsed, never executed.
from collections import OrderedDict

gru4rec_params = OrderedDict([
    ('loss', 'bpr-max'),
    ('constrained_embedding', True),
    ('embedding', 0),
    ('elu_param', 1.0),
    ('layers', [512]),
    ('n_epochs', 10),
    ('batch_size', 144),
    ('dropout_p_embed', 0.35),
    ('dropout_p_hidden', 0.0),
    ('learning_rate', 0.05),
    ('momentum', 0.4),
    ('n_sample', 2048),
    ('sample_alpha', 0.2),
    ('bpreg', 1.85),
    ('logq', 0.0),
])
