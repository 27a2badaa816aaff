import torch

from disco_plug.fit.kmeans import cluster_covariances, cluster_members, kmeans


def test_kmeans_finds_separated_blobs_and_is_deterministic(generator):
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], dtype=torch.float64)
    truth = torch.arange(3).repeat_interleave(100)
    x = (centres[truth] + torch.randn(300, 2, generator=generator, dtype=torch.float64))[None]
    labels = kmeans(x, 3)[0]
    for j in range(3):  # each true blob is one cluster
        assert labels[truth == j].unique().numel() == 1
    assert labels.unique().numel() == 3
    assert torch.equal(kmeans(x, 3), kmeans(x, 3))  # fixed seed: same data, same clusters


def test_kmeans_on_a_subset_labels_every_point(generator):
    x = torch.randn(2, 500, 3, generator=generator, dtype=torch.float64)
    labels = kmeans(x, 5, subset=torch.arange(100).expand(2, -1))
    assert labels.shape == (2, 500) and int(labels.max()) < 5


def test_cluster_covariances_shrink_to_the_pooled_one(generator):
    x = torch.randn(1, 400, 2, generator=generator, dtype=torch.float64)
    labels = (x[..., 0] > 0).long()
    cov = cluster_covariances(x, labels, 2, prior=0.0, floor=0.0)
    for j in range(2):
        members = x[0, labels[0] == j]
        torch.testing.assert_close(cov[0, j], torch.cov(members.T, correction=0))
    pooled = cluster_covariances(x, labels, 2, prior=1e9, floor=0.0)
    torch.testing.assert_close(pooled[0, 0], pooled[0, 1])
    one = cluster_covariances(x[:, :3], torch.tensor([[0, 1, 1]]), 2, prior=0.0, floor=1e-4)
    assert bool((torch.linalg.eigvalsh(one) > 0).all())  # a one-point cluster still has a positive definite kernel


def test_cluster_members_pads_smaller_contexts():
    labels = torch.tensor([[0, 1, 1, 0], [1, 1, 1, 0]])
    members = {j: (idx, valid) for j, idx, valid in cluster_members(labels, 3)}
    assert set(members) == {0, 1}
    idx, valid = members[1]
    assert idx.shape == (2, 3) and valid.tolist() == [[True, True, False], [True, True, True]]
    assert sorted(idx[0, :2].tolist()) == [1, 2]
