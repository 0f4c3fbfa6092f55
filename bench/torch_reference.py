"""Baseline for bench/path_integration.py: the reference PyTorch path integrator's training step, re-implemented.

What is reproduced (from the public description of Sorscher et al.'s PyTorch code, github.com/ganguli-lab/
grid-pattern-formation, model.py): encoder Linear(Np -> Ng, no bias) of the initial place-cell code, nn.RNN(2 -> Ng,
ReLU, no bias), decoder Linear(Ng -> Np, no bias), loss -(y * log softmax(pred)).sum(-1).mean() + 1e-4 * |W_hh|^2,
Adam 1e-4. Its loss function calls predict() twice (once for the decoding error, once for the loss), so each step
runs two forward passes; that is kept, since it is the baseline the issue names. Data generation is excluded from the
timed region (favouring the baseline).

Usage: python bench/torch_reference.py [steps]   (prints one JSON line)
"""

import json
import resource
import sys
import time

import torch


def main(steps: int = 3) -> None:
    torch.manual_seed(0)
    n_g, n_p, batch, seq = 4096, 512, 200, 20
    encoder = torch.nn.Linear(n_p, n_g, bias=False)
    rnn = torch.nn.RNN(2, n_g, nonlinearity="relu", bias=False)
    decoder = torch.nn.Linear(n_g, n_p, bias=False)
    params = [*encoder.parameters(), *rnn.parameters(), *decoder.parameters()]
    optimizer = torch.optim.Adam(params, lr=1e-4)
    velocity = 0.02 * torch.randn(seq, batch, 2)
    init_code = torch.softmax(torch.randn(batch, n_p), dim=-1)
    targets = torch.softmax(torch.randn(seq, batch, n_p), dim=-1)
    centres = torch.rand(n_p, 2) * 2.2 - 1.1

    def predict():
        states, _ = rnn(velocity, encoder(init_code)[None])
        return decoder(states)

    def step() -> float:
        optimizer.zero_grad()
        preds = predict()
        log_probs = torch.log(torch.softmax(predict(), dim=-1))
        loss = -(targets * log_probs).sum(-1).mean() + 1e-4 * (rnn.weight_hh_l0**2).sum()
        _, top = torch.topk(preds, k=3, dim=-1)
        decoded = centres[top].mean(-2)  # decoding error as in the reference (not used for the update)
        del decoded
        loss.backward()
        optimizer.step()
        return float(loss)

    step()  # warm-up
    times = []
    for _ in range(steps):
        began = time.perf_counter()
        step()
        times.append(time.perf_counter() - began)
    times.sort()
    print(
        json.dumps(
            {
                "torch_version": torch.__version__,
                "threads": torch.get_num_threads(),
                "step_seconds": times[len(times) // 2],
                "step_seconds_all": times,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
