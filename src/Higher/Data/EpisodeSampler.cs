namespace Higher.Data;

/// <summary>
/// One N-way K-shot episode: a support set of <c>ways × shots</c> examples and a query set of
/// <c>ways × queries</c> examples of the same <c>ways</c> classes, no example in both.
/// </summary>
/// <param name="SupportImages">[ways × shots, ...] (the image shape of the sampler's set), class by class: the shots of episode class 0, then of class 1, ...</param>
/// <param name="SupportLabels">[ways × shots] Int64: the episode label of each support example, in 0..ways-1.</param>
/// <param name="QueryImages">[ways × queries, ...], class by class like the support set.</param>
/// <param name="QueryLabels">[ways × queries] Int64, in 0..ways-1.</param>
/// <param name="Classes">The dataset classes drawn: episode label i is dataset class <c>Classes[i]</c>.</param>
/// <param name="SupportIndices">The support examples' rows in the sampler's set, in the order of <paramref name="SupportImages"/>.</param>
/// <param name="QueryIndices">The query examples' rows in the sampler's set, in the order of <paramref name="QueryImages"/>.</param>
public sealed record Episode(
    Tensor SupportImages,
    Tensor SupportLabels,
    Tensor QueryImages,
    Tensor QueryLabels,
    IReadOnlyList<int> Classes,
    IReadOnlyList<long> SupportIndices,
    IReadOnlyList<long> QueryIndices);

/// <summary>
/// Draws N-way K-shot episodes with query sets from any labelled set of examples (images
/// [n, ...] and Int64 labels [n]), restricted to a given list of classes, as few-shot learning
/// (MAML, prototypical networks) trains and tests on: each episode draws <see cref="Ways"/>
/// distinct classes uniformly from <see cref="Classes"/>, in random order (episode label i is the
/// i-th class drawn, so labels are permuted across episodes), and for each class
/// <see cref="Shots"/> + <see cref="Queries"/> distinct examples uniformly without replacement: the
/// first <see cref="Shots"/> form its support examples, the rest its queries. Support and query
/// sets are therefore disjoint, and every draw comes from the generator passed to
/// <see cref="Sample"/>: the same seed gives the same episodes, on every backend.
/// </summary>
/// <remarks>
/// Give meta-training and meta-testing samplers disjoint class lists for the usual few-shot
/// protocol. The sampler keeps no state between draws (it may be shared between threads; a shared
/// generator then hands out its counters in the order the threads reach it).
/// </remarks>
public sealed class EpisodeSampler
{
    private readonly int[] _classes;
    private readonly long[][] _rows;

    /// <summary>Creates a sampler over the examples of <paramref name="classes"/>.</summary>
    /// <param name="images">The examples, [n, ...] of any dtype and device; episodes are rows of it (on its device).</param>
    /// <param name="labels">[n] Int64 class labels (read once, on any device).</param>
    /// <param name="classes">The classes episodes draw from: distinct, each with at least <paramref name="shots"/> + <paramref name="queries"/> examples.</param>
    /// <param name="ways">Classes per episode (N), at least 1 and at most the number of classes.</param>
    /// <param name="shots">Support examples per class (K), at least 1.</param>
    /// <param name="queries">Query examples per class, at least 1.</param>
    /// <exception cref="ArgumentException">An argument breaks one of the rules above; the message names it and the values.</exception>
    public EpisodeSampler(Tensor images, Tensor labels, IEnumerable<int> classes, int ways, int shots, int queries)
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(labels);
        ArgumentNullException.ThrowIfNull(classes);
        const string call = "EpisodeSampler";
        if (images.Rank < 1)
        {
            throw new ArgumentException($"{call}: images must have a leading example axis; got a scalar {images.Shape}.", nameof(images));
        }
        if (labels.DType != DType.Int64 || labels.Rank != 1)
        {
            throw new ArgumentException($"{call}: labels must be a [n] Int64 tensor; got {labels.Shape} {labels.DType.Name()}.", nameof(labels));
        }
        if (labels.Shape[0] != images.Shape[0])
        {
            throw new ArgumentException(
                $"{call}: images {images.Shape} and labels {labels.Shape} must have as many examples (dimension 0: {images.Shape[0]} and {labels.Shape[0]}).", nameof(labels));
        }
        if (ways < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(ways), ways, $"{call}: ways must be at least 1; got {ways}.");
        }
        if (shots < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(shots), shots, $"{call}: shots must be at least 1; got {shots}.");
        }
        if (queries < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(queries), queries, $"{call}: queries must be at least 1; got {queries}.");
        }
        var classList = classes.ToArray();
        if (classList.Length == 0)
        {
            throw new ArgumentException($"{call}: the class list is empty.", nameof(classes));
        }
        var seen = new HashSet<int>();
        foreach (var c in classList)
        {
            if (!seen.Add(c))
            {
                throw new ArgumentException($"{call}: class {c} appears twice in the class list [{string.Join(", ", classList)}].", nameof(classes));
            }
        }
        if (ways > classList.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(ways), ways,
                $"{call}: {ways}-way episodes need at least {ways} classes; the class list [{string.Join(", ", classList)}] has {classList.Length}.");
        }

        var position = new Dictionary<long, int>();
        for (int i = 0; i < classList.Length; i++)
        {
            position[classList[i]] = i;
        }
        var rows = new List<long>[classList.Length];
        for (int i = 0; i < rows.Length; i++)
        {
            rows[i] = [];
        }
        var values = labels.ToInt64Array();
        for (long r = 0; r < values.LongLength; r++)
        {
            if (position.TryGetValue(values[r], out int slot))
            {
                rows[slot].Add(r);
            }
        }
        for (int i = 0; i < rows.Length; i++)
        {
            if (rows[i].Count < shots + queries)
            {
                throw new ArgumentException(
                    $"{call}: class {classList[i]} has {rows[i].Count} examples; {shots} shots + {queries} queries need {shots + queries}.", nameof(classes));
            }
        }

        Images = images;
        _classes = classList;
        _rows = rows.Select(r => r.ToArray()).ToArray();
        Ways = ways;
        Shots = shots;
        Queries = queries;
    }

    /// <summary>The examples episodes are drawn from.</summary>
    public Tensor Images { get; }

    /// <summary>The classes episodes draw from, in the order given.</summary>
    public IReadOnlyList<int> Classes => _classes;

    /// <summary>Classes per episode (N).</summary>
    public int Ways { get; }

    /// <summary>Support examples per class (K).</summary>
    public int Shots { get; }

    /// <summary>Query examples per class.</summary>
    public int Queries { get; }

    /// <summary>The number of examples of <paramref name="cls"/> the sampler holds (0 for a class not in <see cref="Classes"/>).</summary>
    public int CountOf(int cls)
    {
        int i = Array.IndexOf(_classes, cls);
        return i < 0 ? 0 : _rows[i].Length;
    }

    /// <summary>
    /// Draws one episode from <paramref name="generator"/> (its next counters): the classes by a
    /// partial Fisher–Yates shuffle, then each class's examples by rejection of repeats, so the
    /// same generator state gives the same episode.
    /// </summary>
    public Episode Sample(Generator generator)
    {
        ArgumentNullException.ThrowIfNull(generator);
        var order = (int[])_classes.Clone();
        for (int i = 0; i < Ways; i++)
        {
            int j = i + generator.NextInt(order.Length - i);
            (order[i], order[j]) = (order[j], order[i]);
        }
        var picked = order[..Ways];

        int perClass = Shots + Queries;
        var support = new long[Ways * Shots];
        var query = new long[Ways * Queries];
        var supportLabels = new long[support.Length];
        var queryLabels = new long[query.Length];
        var drawn = new HashSet<int>();
        for (int w = 0; w < Ways; w++)
        {
            var rows = _rows[Array.IndexOf(_classes, picked[w])];
            drawn.Clear();
            int k = 0;
            while (k < perClass)
            {
                int r = generator.NextInt(rows.Length);
                if (!drawn.Add(r))
                {
                    continue;
                }
                if (k < Shots)
                {
                    support[(w * Shots) + k] = rows[r];
                    supportLabels[(w * Shots) + k] = w;
                }
                else
                {
                    query[(w * Queries) + k - Shots] = rows[r];
                    queryLabels[(w * Queries) + k - Shots] = w;
                }
                k++;
            }
        }

        var device = Images.Device;
        return new Episode(
            Images.IndexSelect(0, Tensor.FromArray(support, null, device)),
            Tensor.FromArray(supportLabels, null, device),
            Images.IndexSelect(0, Tensor.FromArray(query, null, device)),
            Tensor.FromArray(queryLabels, null, device),
            picked,
            support,
            query);
    }
}
