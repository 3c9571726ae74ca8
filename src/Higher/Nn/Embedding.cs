namespace Higher.Nn;

/// <summary>
/// A lookup table (torch.nn.Embedding): int64 indices of any shape [...] give rows of the weight
/// [num_embeddings, embedding_dim], shaped [..., embedding_dim]. Weights start N(0, 1); the
/// padding row, when given, starts at zero and receives no gradient. Task-batched (<see cref="Binding.Tasks"/> = T):
/// indices [T, ...] look up rows of each task's own table, W [T, num_embeddings, embedding_dim].
/// </summary>
public sealed class Embedding : Module
{
    /// <inheritdoc/>
    internal override bool KeepsNoActivations => true;

    private Parameter _weight;

    /// <summary>A table of <paramref name="numEmbeddings"/> vectors of size <paramref name="embeddingDim"/>.</summary>
    public Embedding(int numEmbeddings, int embeddingDim, int? paddingIdx = null, Generator? generator = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(numEmbeddings);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(embeddingDim);
        if (paddingIdx is { } pad)
        {
            if (pad < -numEmbeddings || pad >= numEmbeddings)
            {
                throw new ArgumentOutOfRangeException(nameof(paddingIdx), pad, $"Padding index must be within the {numEmbeddings} embeddings.");
            }
            paddingIdx = pad < 0 ? pad + numEmbeddings : pad;
        }
        NumEmbeddings = numEmbeddings;
        EmbeddingDim = embeddingDim;
        PaddingIdx = paddingIdx;
        var w = Tensor.Randn([numEmbeddings, embeddingDim], generator: generator);
        if (paddingIdx is { } p)
        {
            w = Tensor.Where(Tensor.Arange(numEmbeddings).Eq(p).Unsqueeze(1), 0, w);
        }
        _weight = RegisterParameter("weight", w)!;
    }

    /// <summary>Number of rows.</summary>
    public int NumEmbeddings { get; }

    /// <summary>Size of each row.</summary>
    public int EmbeddingDim { get; }

    /// <summary>The row that receives no gradient, if any.</summary>
    public int? PaddingIdx { get; }

    /// <inheritdoc/>
    protected override string ExtraRepr() => $"{NumEmbeddings}, {EmbeddingDim}{(PaddingIdx is { } p ? $", padding_idx={p}" : "")}";

    /// <summary>The weight handle.</summary>
    public Parameter Weight => _weight;

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (input.DType != DType.Int64)
        {
            throw new ArgumentException($"Embedding expects int64 indices; got {input.DType.Name()} input {input.Shape}.", nameof(input));
        }
        var weight = _weight.Value;
        int tasks = Binding.Tasks;
        if (tasks > 0)
        {
            TaskBatch.CheckTasks($"Embedding({NumEmbeddings}, {EmbeddingDim})", input, tasks, $"[T={tasks}, ...] of int64 indices");
            // Each task's table is a block of rows of [T·V, D]: task t's index i is row t·V + i.
            var offsets = Tensor.Arange(0, (double)tasks * NumEmbeddings, NumEmbeddings, DType.Int64, input.Device).Reshape([tasks, .. Enumerable.Repeat(1, input.Rank - 1)]);
            return Lookup(weight.Reshape(tasks * NumEmbeddings, EmbeddingDim), NumEmbeddings, input, input + offsets);
        }
        return Lookup(weight, weight.Shape[0], input, input);
    }

    /// <summary>Rows <paramref name="rowIndex"/> of <paramref name="table"/>, checked against the <paramref name="rowCount"/> rows of one table.</summary>
    private Tensor Lookup(Tensor table, int rowCount, Tensor input, Tensor rowIndex)
    {
        var weight = table;
        // Checked here (on the host, where that costs no device round-trip) so that the message names
        // the layer and its table rather than the IndexSelect inside it.
        if (input.TryReadHostInt64(out var indices))
        {
            for (int i = 0; i < indices.Length; i++)
            {
                if (indices[i] < 0 || indices[i] >= rowCount)
                {
                    throw new ArgumentOutOfRangeException(nameof(input),
                        $"Embedding: index {indices[i]} (element {i} of input {input.Shape}) is out of range for num_embeddings {rowCount} (valid: 0..{rowCount - 1}).");
                }
            }
        }
        var rows = weight.IndexSelect(0, rowIndex.Reshape(-1));
        if (PaddingIdx is { } pad)
        {
            var padding = input.Reshape(-1).Eq(pad).Unsqueeze(1);
            rows = Tensor.Where(padding, rows.Detach(), rows);
        }
        var dims = input.Shape.ToArray().Append(EmbeddingDim).ToArray();
        return rows.Reshape(dims);
    }

    /// <inheritdoc/>
    protected override void OnParameterReplaced(string name, Parameter? parameter)
    {
        if (name == "weight")
        {
            _weight = parameter ?? throw new ArgumentNullException(nameof(parameter), "Embedding needs a weight.");
        }
    }
}
