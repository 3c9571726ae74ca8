using Higher.Data;

namespace Higher.Conformance.Data;

/// <summary>
/// The N-way K-shot episode sampler on a generated labelled set whose rows carry their own row
/// number and label (image row r = [r, label of r]), so every drawn example can be traced back.
/// </summary>
public sealed class EpisodeSamplerTests
{
    /// <summary>Classes 0..classes-1 with counts[c] examples each, interleaved (row r has class r mod classes while it has examples left).</summary>
    private static (Tensor Images, Tensor Labels) Set(int[] counts)
    {
        var labels = new List<long>();
        var left = (int[])counts.Clone();
        while (left.Any(n => n > 0))
        {
            for (int c = 0; c < left.Length; c++)
            {
                if (left[c] > 0)
                {
                    labels.Add(c);
                    left[c]--;
                }
            }
        }
        var rows = new double[labels.Count * 2];
        for (int r = 0; r < labels.Count; r++)
        {
            rows[2 * r] = r;
            rows[(2 * r) + 1] = labels[r];
        }
        return (Tensor.FromArray(rows, [labels.Count, 2]), Tensor.FromArray(labels.ToArray()));
    }

    private static readonly int[] TenClasses = [30, 30, 30, 30, 30, 30, 30, 30, 30, 30];

    [Fact]
    public void Episode_HasDistinctClassesFromTheList_ExactCounts_AndDisjointSupportAndQuery()
    {
        var (images, labels) = Set(TenClasses);
        int[] classes = [1, 3, 4, 6, 7, 9];
        var sampler = new EpisodeSampler(images, labels, classes, ways: 5, shots: 3, queries: 4);
        var g = new Generator(7);
        for (int e = 0; e < 50; e++)
        {
            var ep = sampler.Sample(g);
            Assert.Equal(5, ep.Classes.Count);
            Assert.Equal(5, ep.Classes.Distinct().Count());
            Assert.All(ep.Classes, c => Assert.Contains(c, classes));

            Assert.Equal([15, 2], ep.SupportImages.Shape.ToArray());
            Assert.Equal([20, 2], ep.QueryImages.Shape.ToArray());
            Assert.Equal([15], ep.SupportLabels.Shape.ToArray());
            Assert.Equal([20], ep.QueryLabels.Shape.ToArray());
            Assert.Equal(DType.Int64, ep.SupportLabels.DType);
            Assert.Equal(DType.Int64, ep.QueryLabels.DType);

            var s = ep.SupportImages.ToDoubleArray();
            var q = ep.QueryImages.ToDoubleArray();
            var sl = ep.SupportLabels.ToInt64Array();
            var ql = ep.QueryLabels.ToInt64Array();
            for (int w = 0; w < 5; w++)
            {
                Assert.Equal(3, sl.Count(l => l == w));
                Assert.Equal(4, ql.Count(l => l == w));
            }
            // Each row is the set's row it names, of the dataset class its episode label maps to, class by class.
            for (int i = 0; i < 15; i++)
            {
                Assert.Equal(i / 3, sl[i]);
                Assert.Equal(ep.SupportIndices[i], (long)s[2 * i]);
                Assert.Equal(ep.Classes[(int)sl[i]], (int)s[(2 * i) + 1]);
            }
            for (int i = 0; i < 20; i++)
            {
                Assert.Equal(i / 4, ql[i]);
                Assert.Equal(ep.QueryIndices[i], (long)q[2 * i]);
                Assert.Equal(ep.Classes[(int)ql[i]], (int)q[(2 * i) + 1]);
            }
            var all = ep.SupportIndices.Concat(ep.QueryIndices).ToArray();
            Assert.Equal(all.Length, all.Distinct().Count());
        }
    }

    [Fact]
    public void SameSeed_SameEpisodes_OtherSeed_OtherEpisodes()
    {
        var (images, labels) = Set(TenClasses);
        int[] classes = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
        var a = new EpisodeSampler(images, labels, classes, 5, 1, 5);
        var b = new EpisodeSampler(images, labels, classes, 5, 1, 5);
        var ga = new Generator(42);
        var gb = new Generator(42);
        var gc = new Generator(43);
        int differing = 0;
        for (int e = 0; e < 20; e++)
        {
            var ea = a.Sample(ga);
            var eb = b.Sample(gb);
            var ec = a.Sample(gc);
            Assert.Equal(ea.Classes, eb.Classes);
            Assert.Equal(ea.SupportIndices, eb.SupportIndices);
            Assert.Equal(ea.QueryIndices, eb.QueryIndices);
            Assert.Equal(ea.SupportImages.ToDoubleArray(), eb.SupportImages.ToDoubleArray());
            if (!ea.SupportIndices.SequenceEqual(ec.SupportIndices))
            {
                differing++;
            }
        }
        Assert.True(differing >= 19, $"only {differing} of 20 episodes differ between seeds 42 and 43");
    }

    /// <summary>
    /// The draws are uniform: over 4000 episodes every class is drawn, and labelled 0, about equally
    /// often, and every example of a class is a support example (and a query) about equally often,
    /// whatever its row (a sampler taking the first rows, or splitting support and query by row order, fails).
    /// </summary>
    [Fact]
    public void Draws_AreUniformOverClassesLabelsAndExamples()
    {
        var (images, labels) = Set([10, 10, 10, 10]);
        var sampler = new EpisodeSampler(images, labels, [0, 1, 2, 3], ways: 2, shots: 2, queries: 3);
        var g = new Generator(3);
        const int episodes = 4000;
        var drawn = new int[4];
        var labelledZero = new int[4];
        var inSupport = new int[40];
        var inQuery = new int[40];
        for (int e = 0; e < episodes; e++)
        {
            var ep = sampler.Sample(g);
            foreach (var c in ep.Classes)
            {
                drawn[c]++;
            }
            labelledZero[ep.Classes[0]]++;
            foreach (var r in ep.SupportIndices)
            {
                inSupport[r]++;
            }
            foreach (var r in ep.QueryIndices)
            {
                inQuery[r]++;
            }
        }
        // Expected: each class in half the episodes (2000), labelled 0 in a quarter (1000); an example
        // of a drawn class is a support example with probability 2/10 and a query with 3/10: 400 and 600.
        Assert.All(drawn, n => Assert.InRange(n, 1850, 2150));
        Assert.All(labelledZero, n => Assert.InRange(n, 880, 1120));
        Assert.All(inSupport, n => Assert.InRange(n, 320, 480));
        Assert.All(inQuery, n => Assert.InRange(n, 500, 700));
    }

    [Fact]
    public void EveryExampleOfAClass_CanBeDrawn_WhenTheClassHasExactlyEnough()
    {
        var (images, labels) = Set([5, 5]);
        var sampler = new EpisodeSampler(images, labels, [0, 1], ways: 2, shots: 2, queries: 3);
        var ep = sampler.Sample(new Generator(1));
        Assert.Equal(Enumerable.Range(0, 10).Select(i => (long)i), ep.SupportIndices.Concat(ep.QueryIndices).Order());
        Assert.Equal(5, sampler.CountOf(0));
        Assert.Equal(0, sampler.CountOf(7));
    }

    [Fact]
    public void BadArguments_AreRefused_NamingTheProblem()
    {
        var (images, labels) = Set([6, 6, 6, 2]);
        int[] classes = [0, 1, 2];

        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new EpisodeSampler(images, labels, classes, 0, 1, 1));
        Assert.Contains("ways must be at least 1; got 0", e.Message);
        e = Assert.Throws<ArgumentOutOfRangeException>(() => new EpisodeSampler(images, labels, classes, 2, 0, 1));
        Assert.Contains("shots must be at least 1; got 0", e.Message);
        e = Assert.Throws<ArgumentOutOfRangeException>(() => new EpisodeSampler(images, labels, classes, 2, 1, -1));
        Assert.Contains("queries must be at least 1; got -1", e.Message);
        e = Assert.Throws<ArgumentOutOfRangeException>(() => new EpisodeSampler(images, labels, classes, 4, 1, 1));
        Assert.Contains("4-way episodes need at least 4 classes; the class list [0, 1, 2] has 3", e.Message);

        var a = Assert.Throws<ArgumentException>(() => new EpisodeSampler(images, labels, [0, 1, 0], 2, 1, 1));
        Assert.Contains("class 0 appears twice", a.Message);
        a = Assert.Throws<ArgumentException>(() => new EpisodeSampler(images, labels, Array.Empty<int>(), 1, 1, 1));
        Assert.Contains("the class list is empty", a.Message);
        a = Assert.Throws<ArgumentException>(() => new EpisodeSampler(images, labels, [0, 3], 2, 1, 2));
        Assert.Contains("class 3 has 2 examples; 1 shots + 2 queries need 3", a.Message);
        a = Assert.Throws<ArgumentException>(() => new EpisodeSampler(images, labels, [0, 9], 2, 1, 1));
        Assert.Contains("class 9 has 0 examples", a.Message);
        a = Assert.Throws<ArgumentException>(() => new EpisodeSampler(images, labels.Cast(DType.Float32), classes, 2, 1, 1));
        Assert.Contains("labels must be a [n] Int64 tensor", a.Message);
        a = Assert.Throws<ArgumentException>(() => new EpisodeSampler(images, labels.Reshape(2, -1), classes, 2, 1, 1));
        Assert.Contains("labels must be a [n] Int64 tensor", a.Message);
        a = Assert.Throws<ArgumentException>(() => new EpisodeSampler(images.Narrow(0, 0, 10), labels, classes, 2, 1, 1));
        Assert.Contains("as many examples", a.Message);
        Assert.Throws<ArgumentNullException>(() => new EpisodeSampler(images, labels, classes, 2, 1, 1).Sample(null!));
    }
}
