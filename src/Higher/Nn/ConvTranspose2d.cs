namespace Higher.Nn;

/// <summary>
/// 2-D transposed convolution layer (torch.nn.ConvTranspose2d): y = <see cref="Tensor.ConvTranspose2d"/>(x, W, b,
/// stride, padding, output padding, groups, dilation) with W [in, out/groups, kh, kw] and b [out].
/// Initialization as PyTorch's: kaiming_uniform with a = √5 and b ~ U(-1/√fan_in, 1/√fan_in), where
/// fan_in = W.size(1)·kh·kw = out/groups·kh·kw (torch computes it from the weight's second dimension).
/// Task-batched (<see cref="Binding.Tasks"/> = T): x [T, B, C_in, H, W] with W [T, in, out/groups, kh, kw],
/// one transposed convolution with the tasks folded into the groups.
/// </summary>
public sealed class ConvTranspose2d : Module
{
    /// <inheritdoc/>
    internal override bool KeepsNoActivations => true;

    private Parameter _weight;
    private Parameter? _bias;

    /// <summary>A layer from <paramref name="inChannels"/> to <paramref name="outChannels"/>, drawing its initial weights from <paramref name="generator"/>.</summary>
    /// <param name="inChannels">C_in of the input [N, C_in, H, W].</param>
    /// <param name="outChannels">C_out of the output.</param>
    /// <param name="kernelSize">(kh, kw), or one size for both.</param>
    /// <param name="stride">Stride of the adjoint convolution (default 1).</param>
    /// <param name="padding">Padding of the adjoint convolution (default 0).</param>
    /// <param name="outputPadding">Rows and columns added at the bottom and right of the output (default 0).</param>
    /// <param name="groups">Channel groups; must divide both channel counts.</param>
    /// <param name="bias">Whether to learn an additive bias per output channel.</param>
    /// <param name="dilation">Spacing between kernel taps (default 1).</param>
    /// <param name="generator">Source of the initial weights (default <see cref="Generator.Default"/>).</param>
    public ConvTranspose2d(int inChannels, int outChannels, Size2d kernelSize, Size2d? stride = null, Size2d? padding = null, Size2d? outputPadding = null,
        int groups = 1, bool bias = true, Size2d? dilation = null, Generator? generator = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(inChannels);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(outChannels);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(groups);
        if (kernelSize.Height <= 0 || kernelSize.Width <= 0)
        {
            throw new ArgumentException($"ConvTranspose2d: kernel size must be positive; got {kernelSize}.", nameof(kernelSize));
        }
        if (inChannels % groups != 0 || outChannels % groups != 0)
        {
            throw new ArgumentException($"ConvTranspose2d: groups = {groups} must divide both in channels ({inChannels}) and out channels ({outChannels}).", nameof(groups));
        }
        InChannels = inChannels;
        OutChannels = outChannels;
        KernelSize = kernelSize;
        Stride = stride ?? 1;
        Padding = padding ?? 0;
        OutputPadding = outputPadding ?? 0;
        Dilation = dilation ?? 1;
        Groups = groups;
        var w = Tensor.Zeros([inChannels, outChannels / groups, kernelSize.Height, kernelSize.Width]);
        (_weight, _bias) = RegisterConvParameters(w, outChannels, bias, generator);
    }

    /// <summary>Channels of the input.</summary>
    public int InChannels { get; }

    /// <summary>Channels of the output.</summary>
    public int OutChannels { get; }

    /// <summary>(kh, kw).</summary>
    public Size2d KernelSize { get; }

    /// <summary>Stride of the adjoint convolution.</summary>
    public Size2d Stride { get; }

    /// <summary>Padding of the adjoint convolution.</summary>
    public Size2d Padding { get; }

    /// <summary>Rows and columns added at the bottom and right of the output.</summary>
    public Size2d OutputPadding { get; }

    /// <summary>Spacing between kernel taps.</summary>
    public Size2d Dilation { get; }

    /// <summary>Channel groups.</summary>
    public int Groups { get; }

    /// <summary>The weight handle [in, out/groups, kh, kw].</summary>
    public Parameter Weight => _weight;

    /// <summary>The bias handle [out], or null without bias.</summary>
    public Parameter? Bias => _bias;

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input) => Binding.Tasks > 0
        ? TaskBatch.Convolution($"ConvTranspose2d({InChannels}, {OutChannels})", input, _weight.Value, _bias?.Value, Groups, InChannels,
            (x, w, b, groups) => Tensor.ConvTranspose2d(x, w, b, Stride, Padding, OutputPadding, groups, Dilation))
        : Tensor.ConvTranspose2d(input, _weight.Value, _bias?.Value, Stride, Padding, OutputPadding, Groups, Dilation);

    /// <inheritdoc/>
    protected override void OnParameterReplaced(string name, Parameter? parameter)
    {
        if (name == "weight")
        {
            _weight = parameter ?? throw new ArgumentNullException(nameof(parameter), "ConvTranspose2d needs a weight.");
        }
        else if (name == "bias")
        {
            _bias = parameter;
        }
    }
}
