namespace Higher.Nn;

/// <summary>
/// 2-D convolution layer (torch.nn.Conv2d): y = <see cref="Tensor.Conv2d"/>(x, W, b, stride,
/// padding, dilation, groups) with W [out, in/groups, kh, kw] and b [out]. Initialization as
/// PyTorch's: kaiming_uniform with a = √5, which is W ~ U(-1/√fan_in, 1/√fan_in), and
/// b ~ U(-1/√fan_in, 1/√fan_in), where fan_in = in/groups·kh·kw. Task-batched (<see cref="Binding.Tasks"/> = T):
/// x [T, B, C, H, W] with W [T, out, in/groups, kh, kw] and b [T, out], one convolution with the tasks
/// folded into the groups (T·groups groups over [B, T·C, H, W]).
/// </summary>
public sealed class Conv2d : Module
{
    /// <inheritdoc/>
    internal override bool KeepsNoActivations => true;

    private Parameter _weight;
    private Parameter? _bias;

    /// <summary>A layer from <paramref name="inChannels"/> to <paramref name="outChannels"/>, drawing its initial weights from <paramref name="generator"/>.</summary>
    /// <param name="inChannels">C of the input [N, C, H, W].</param>
    /// <param name="outChannels">O of the output [N, O, OH, OW].</param>
    /// <param name="kernelSize">(kh, kw), or one size for both.</param>
    /// <param name="stride">Step between output positions (default 1).</param>
    /// <param name="padding">Zeros added on both sides of each spatial axis, or "same" / "valid" (default 0).</param>
    /// <param name="dilation">Spacing between kernel taps (default 1).</param>
    /// <param name="groups">Channel groups; must divide both channel counts.</param>
    /// <param name="bias">Whether to learn an additive bias per output channel.</param>
    /// <param name="generator">Source of the initial weights (default <see cref="Generator.Default"/>).</param>
    public Conv2d(int inChannels, int outChannels, Size2d kernelSize, Size2d? stride = null, ConvPadding? padding = null, Size2d? dilation = null,
        int groups = 1, bool bias = true, Generator? generator = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(inChannels);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(outChannels);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(groups);
        if (kernelSize.Height <= 0 || kernelSize.Width <= 0)
        {
            throw new ArgumentException($"Conv2d: kernel size must be positive; got {kernelSize}.", nameof(kernelSize));
        }
        if (inChannels % groups != 0 || outChannels % groups != 0)
        {
            throw new ArgumentException($"Conv2d: groups = {groups} must divide both in channels ({inChannels}) and out channels ({outChannels}).", nameof(groups));
        }
        InChannels = inChannels;
        OutChannels = outChannels;
        KernelSize = kernelSize;
        Stride = stride ?? 1;
        Padding = padding ?? 0;
        Dilation = dilation ?? 1;
        Groups = groups;
        if (Padding.IsSame && Stride != new Size2d(1, 1))
        {
            throw new ArgumentException($"Conv2d: padding \"same\" needs stride 1 (as in PyTorch); got stride {Stride}.", nameof(padding));
        }
        var w = Tensor.Zeros([outChannels, inChannels / groups, kernelSize.Height, kernelSize.Width]);
        (_weight, _bias) = RegisterConvParameters(w, outChannels, bias, generator);
    }

    /// <summary>Channels of the input.</summary>
    public int InChannels { get; }

    /// <summary>Channels of the output.</summary>
    public int OutChannels { get; }

    /// <summary>(kh, kw).</summary>
    public Size2d KernelSize { get; }

    /// <summary>Step between output positions.</summary>
    public Size2d Stride { get; }

    /// <summary>Zero padding on both sides of each spatial axis, or "same".</summary>
    public ConvPadding Padding { get; }

    /// <summary>Spacing between kernel taps.</summary>
    public Size2d Dilation { get; }

    /// <summary>Channel groups.</summary>
    public int Groups { get; }

    /// <inheritdoc/>
    protected override string ExtraRepr()
    {
        var s = $"{InChannels}, {OutChannels}, kernel_size={Py(KernelSize)}, stride={Py(Stride)}";
        if (Padding.IsSame)
        {
            s += ", padding=same";
        }
        else if (Padding.Size != new Size2d(0, 0))
        {
            s += $", padding={Py(Padding.Size)}";
        }
        if (Dilation != new Size2d(1, 1))
        {
            s += $", dilation={Py(Dilation)}";
        }
        if (Groups != 1)
        {
            s += $", groups={Groups}";
        }
        return _bias is null ? s + ", bias=False" : s;
    }

    /// <summary>The weight handle [out, in/groups, kh, kw].</summary>
    public Parameter Weight => _weight;

    /// <summary>The bias handle [out], or null without bias.</summary>
    public Parameter? Bias => _bias;

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input) => Binding.Tasks > 0
        ? TaskBatch.Convolution($"Conv2d({InChannels}, {OutChannels})", input, _weight.Value, _bias?.Value, Groups, InChannels,
            (x, w, b, groups) => Tensor.Conv2d(x, w, b, Stride, Padding, Dilation, groups))
        : Tensor.Conv2d(input, _weight.Value, _bias?.Value, Stride, Padding, Dilation, Groups);

    /// <inheritdoc/>
    protected override void OnParameterReplaced(string name, Parameter? parameter)
    {
        if (name == "weight")
        {
            _weight = parameter ?? throw new ArgumentNullException(nameof(parameter), "Conv2d needs a weight.");
        }
        else if (name == "bias")
        {
            _bias = parameter;
        }
    }
}
